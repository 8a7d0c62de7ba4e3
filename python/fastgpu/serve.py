"""The model server that `deploy_model` runs on each replica:

    python -m fastgpu.serve --model model.onnx [--input-shape 64,64] [--dtype float32]
    python -m fastgpu.serve --function handler:predict

ONNX models run through onnxruntime (CUDA when the replica has a GPU and onnxruntime-gpu, else
the CPU); a function is any Python callable `module:function` taking one numpy array. It listens
on $PORT (the agent gives each replica one), answers `GET /healthz` once the model is loaded, and
`POST /predict` (also `/`) with a JSON body `{"inputs": [...], "dtype": "float32"}` or an .npy body
(`Content-Type: application/x-npy`). The answer is .npy when the caller accepts it and the result
is an array, else JSON `{"outputs": ..., "dtype": ..., "shape": ...}`. A wrong input is a 400 with
a problem+json body naming what is wrong, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Sequence, Tuple

from . import _arrays
from .errors import InvalidInput

MAX_BODY = 256 * 1024 * 1024


class Model:
    """A loaded model: `__call__(array) -> array or JSON-able value`."""

    def __init__(self, predict: Callable[[Any], Any], input_shape: Optional[Tuple[int, ...]], dtype: Optional[str], describe: str) -> None:
        self.predict = predict
        self.input_shape = input_shape
        self.dtype = dtype
        self.describe = describe

    def __call__(self, data: Any) -> Any:
        array = _arrays.as_array(data, self.dtype)
        _arrays.check_shape(array, self.input_shape)
        return self.predict(array)


def load_onnx(path: str, input_shape: Optional[Tuple[int, ...]], dtype: Optional[str]) -> Model:
    import numpy as np
    import onnxruntime as ort

    if not os.path.isfile(path):
        raise SystemExit(f"fastgpu.serve: no model file {path}")
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    session = ort.InferenceSession(path, providers=providers)
    first = session.get_inputs()[0]
    rank = len(first.shape)
    kinds = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64", "tensor(int32)": "int32",
             "tensor(float16)": "float16", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
    model_dtype = kinds.get(first.type, "float32")

    def run(array: Any) -> Any:
        array = array.astype(model_dtype, copy=False)
        batched = array.ndim == rank - 1
        if batched:
            array = array[np.newaxis, ...]
        if array.ndim != rank:
            raise InvalidInput(f"the model's input {first.name} has {rank} dimensions {tuple(first.shape)}; the array has {array.ndim}")
        try:
            output = session.run(None, {first.name: array})[0]
        except Exception as exc:  # onnxruntime's errors are plain RuntimeErrors with the reason
            raise InvalidInput(f"the model refused the input: {str(exc).splitlines()[0][:300]}") from None
        return output[0] if batched else output

    return Model(run, input_shape, dtype or model_dtype, f"ONNX {os.path.basename(path)} on {session.get_providers()[0]}")


def load_function(spec: str, input_shape: Optional[Tuple[int, ...]], dtype: Optional[str]) -> Model:
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise SystemExit(f"fastgpu.serve: --function is module:function, not {spec!r}")
    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    function = module
    for part in function_name.split("."):
        function = getattr(function, part)
    if not callable(function):
        raise SystemExit(f"fastgpu.serve: {spec} is not callable")
    return Model(function, input_shape, dtype, f"function {spec}")


def shape_of(text: Optional[str]) -> Optional[Tuple[int, ...]]:
    if not text:
        return None
    return tuple(int(part) for part in text.split(","))


def encode_result(result: Any, accept_npy: bool) -> Tuple[bytes, str]:
    if type(result).__module__ == "numpy" and hasattr(result, "dtype"):
        if accept_npy and result.nbytes > _arrays.JSON_LIMIT:
            return _arrays.to_npy(result), _arrays.NPY
        body = {"outputs": result.tolist(), "dtype": str(result.dtype), "shape": list(result.shape)}
        return json.dumps(body, separators=(",", ":")).encode(), "application/json"
    return json.dumps({"outputs": result}, separators=(",", ":"), default=_json_default).encode(), "application/json"


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def handler_for(model: Model, ready: threading.Event) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fastgpu-serve/0.1"
        # Headers and body leave in one write, without Nagle's delay: written apart, the body
        # waited for the client's delayed ACK of the headers (40 ms a request).
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # one line per error only
            return

        def reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def problem(self, status: int, title: str, detail: str) -> None:
            body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
            self.reply(status, body, "application/problem+json")

        def do_GET(self) -> None:
            if self.path.split("?")[0] in ("/healthz", "/readyz"):
                if ready.is_set():
                    self.reply(200, b"ok\n", "text/plain")
                else:
                    self.problem(503, "Loading", "the model is loading")
            elif self.path.split("?")[0] == "/":
                info = {"model": model.describe, "inputShape": model.input_shape, "dtype": model.dtype}
                self.reply(200, json.dumps(info).encode(), "application/json")
            else:
                self.problem(404, "Not found", "POST /predict; GET /healthz")

        def do_POST(self) -> None:
            if self.path.split("?")[0] not in ("/predict", "/"):
                self.problem(404, "Not found", "POST /predict")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self.problem(413 if length > MAX_BODY else 400, "Bad input", f"a body of 1 byte to {MAX_BODY} bytes is needed")
                return
            raw = self.rfile.read(length)
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            try:
                if content_type == _arrays.NPY:
                    data = _arrays.from_npy(raw)
                else:
                    try:
                        value = json.loads(raw)
                    except ValueError:
                        raise InvalidInput("the body is neither JSON nor .npy (Content-Type: application/x-npy)") from None
                    if not isinstance(value, dict) or "inputs" not in value:
                        raise InvalidInput('a JSON body is {"inputs": [...]} with optional "dtype"')
                    data = _arrays.as_array(value["inputs"], value.get("dtype") or model.dtype)
                result = model(data)
            except InvalidInput as exc:
                self.problem(400, "Bad input", str(exc))
                return
            except Exception as exc:  # the function's own failure: said, not shown as a traceback
                sys.stderr.write(f"fastgpu.serve: predict failed: {type(exc).__name__}: {exc}\n")
                self.problem(500, "Predict failed", f"{type(exc).__name__}: {str(exc)[:300]}")
                return
            body, kind = encode_result(result, _arrays.NPY in (self.headers.get("Accept") or ""))
            self.reply(200, body, kind)

    return Handler


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fastgpu.serve", description="Serve an ONNX model or a Python function over HTTP.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="an ONNX file")
    what.add_argument("--function", help="module:function, a callable taking one numpy array")
    parser.add_argument("--input-shape", help="the shape of one input, e.g. 64,64 (-1: any size); a batch adds a leading dimension")
    parser.add_argument("--dtype", help="the input's dtype (default: the model's, float32)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args(argv)
    ready = threading.Event()
    input_shape = shape_of(args.input_shape)
    model = load_onnx(args.model, input_shape, args.dtype) if args.model else load_function(args.function, input_shape, args.dtype)
    server = ThreadingHTTPServer((args.host, args.port), handler_for(model, ready))
    server.daemon_threads = True
    ready.set()
    print(f"fastgpu.serve: {model.describe} on port {args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
