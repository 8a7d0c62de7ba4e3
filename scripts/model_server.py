#!/usr/bin/env python3
"""A stand-in model server for tests and benchmarks: listens on $PORT, answers GET /health once
STARTUP_DELAY_S has passed (as a large model would after loading), and POST or GET /predict
after sleeping `?sleep=SECONDS` (or PREDICT_SLEEP_S), echoing the body's size and its replica."""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

STARTED = time.monotonic()
DELAY = float(os.environ.get("STARTUP_DELAY_S", "0"))
SLEEP = float(os.environ.get("PREDICT_SLEEP_S", "0"))
REPLICA = os.environ.get("FASTGPU_ALLOCATION_ID", "?")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/health":
            if time.monotonic() - STARTED < DELAY:
                return self.answer(503, {"ready": False})
            return self.answer(200, {"ready": True})
        if url.path == "/predict":
            return self.predict(url, b"")
        if url.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(parse_qs(url.query).get("n", ["3"])[0])):
                chunk = f"token {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
            return None
        return self.answer(404, {"error": "no such path"})

    def do_POST(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path == "/predict":
            return self.predict(url, body)
        return self.answer(404, {"error": "no such path"})

    def predict(self, url, body):
        sleep = float(parse_qs(url.query).get("sleep", [SLEEP])[0])
        if sleep > 0:
            time.sleep(sleep)
        return self.answer(200, {"replica": REPLICA, "bytes": len(body), "revision": os.environ.get("FASTGPU_REVISION", "?")})


if __name__ == "__main__":
    port = int(os.environ.get("PORT", sys.argv[1] if len(sys.argv) > 1 else "8080"))
    if os.environ.get("PID_DIR"):
        with open(os.path.join(os.environ["PID_DIR"], REPLICA + ".pid"), "w") as f:
            f.write(str(os.getpid()))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    server.serve_forever()
