#!/usr/bin/env python3
"""What the SDK and the gateway add to a prediction: `model.predict(x)` through the gateway
against the same request sent straight to the replica, on a warm replica, in one run.

    python scripts/bench-sdk.py [--bin .build/release/fastgpu] [--requests 500]

Starts its own `fastgpu up` (four simulated H100s) on free loopback ports, deploys a 64×64 ONNX
model with one replica kept warm, then alternates the two paths request by request (so both see
the same machine), and prints p50/p90/p99 of each and of the difference. Needs the SDK's test
environment (scripts/python-env.sh): numpy, onnx, onnxruntime."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))
sys.path.insert(0, os.path.join(REPO, "python", "tests"))

from conftest import Lines, free_port  # noqa: E402

from fastgpu import Client  # noqa: E402
from fastgpu._arrays import decode_output, encode_input  # noqa: E402


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(REPO, ".build", "release", "fastgpu"))
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    directory = tempfile.mkdtemp(prefix="fastgpu-bench-sdk-")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])], "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64, 64])],
        initializer=[numpy_helper.from_array(np.array(2.0, np.float32), "two"), numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    model_path = os.path.join(directory, "model.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), model_path)

    port, gateway = free_port(), free_port()
    process = subprocess.Popen([args.bin, "up", "--data-dir", directory + "/data", "--port", str(port), "--gateway-port", str(gateway),
                                "--simulate-gpus", "4xH100-80GB", "--log-level", "notice"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "HOME": directory})
    lines = Lines(process.stdout)
    try:
        lines.wait_for("FastGPU is up at")
        lines.wait_for("registered as node")
        token = open(directory + "/data/admin-token").read().strip()
        client = Client(f"http://127.0.0.1:{port}", token=token, gateway=f"http://127.0.0.1:{gateway}")
        model = client.deploy_model(model_file=model_path, input_shape=(64, 64), replicas=(1, 1), python=sys.executable)
        data = np.random.default_rng(1).random((64, 64), dtype=np.float32)
        for _ in range(30):
            model.predict(data)
        replica = next(r for r in model.status()["replicas"] if r.get("endpoint"))
        direct_url = f"http://{replica['endpoint']}/predict"
        body, content_type = encode_input(data)
        direct = httpx.Client()
        headers = {"Content-Type": content_type, "Accept": "application/x-npy, application/json"}
        for _ in range(30):
            direct.post(direct_url, content=body, headers=headers).raise_for_status()
        sdk_ms, direct_ms = [], []
        for _ in range(args.requests):
            started = time.perf_counter()
            response = direct.post(direct_url, content=body, headers=headers)
            response.raise_for_status()
            decode_output(response.headers.get("content-type", ""), response.content)
            direct_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            model.predict(data)
            sdk_ms.append((time.perf_counter() - started) * 1000)
        added = [s - d for s, d in zip(sdk_ms, direct_ms)]
        print(f"predict of a 64×64 float32 array ({len(body)} bytes as {content_type}), {args.requests} requests each, one warm replica, {os.cpu_count()} cores")
        print(f"{'path':<32}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
        for name, values in (("direct to the replica (httpx)", direct_ms), ("SDK predict through the gateway", sdk_ms),
                             ("added (paired difference)", added)):
            print(f"{name:<32}{percentile(values, 50):>10.2f}{percentile(values, 90):>10.2f}{percentile(values, 99):>10.2f}")
        model.delete()
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
