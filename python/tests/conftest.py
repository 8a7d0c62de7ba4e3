"""A real FastGPU for the SDK's tests: `fastgpu up` (the binary `swift build` made) on free
loopback ports, one node with four simulated H100s and the `local` storage backend, and a
model-server Python that jobs can run (FASTGPU_SERVE_PYTHON: numpy and onnxruntime in it).
Readiness is awaited on the server's own words (its log lines), never by sleeping."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Iterator, List, Optional

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The SDK of this checkout, whatever the environment has installed.
sys.path.insert(0, os.path.join(REPO, "python"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lines:
    """A process's output, line by line, to wait on."""

    def __init__(self, stream) -> None:
        self.seen: List[str] = []
        self.queue: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.queue.put(raw.decode("utf-8", "replace"))
        self.queue.put(None)

    def wait_for(self, text: str, timeout: float = 120) -> str:
        for line in self.seen:
            if text in line:
                return line
        while True:
            try:
                line = self.queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} within {timeout} s; last lines:\n" + "".join(self.seen[-20:])) from None
            if line is None:
                raise AssertionError(f"the process ended before saying {text!r}:\n" + "".join(self.seen[-40:]))
            self.seen.append(line)
            if text in line:
                return line


@dataclass
class Cluster:
    url: str
    gateway: str
    token: str
    directory: str
    process: subprocess.Popen
    output: Lines


def fastgpu_binary() -> str:
    path = os.environ.get("FASTGPU_BIN") or os.path.join(REPO, ".build", "debug", "fastgpu")
    if not os.access(path, os.X_OK):
        pytest.exit(f"no fastgpu binary at {path}: run `swift build` first (scripts/test.sh does)", returncode=2)
    return path


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    directory = tempfile.mkdtemp(prefix="fastgpu-sdk-")
    port, gateway = free_port(), free_port()
    process = subprocess.Popen(
        [fastgpu_binary(), "up", "--data-dir", directory + "/data", "--port", str(port), "--gateway-port", str(gateway),
         "--simulate-gpus", "4xH100-80GB", "--log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, "HOME": directory})
    output = Lines(process.stdout)
    try:
        output.wait_for("FastGPU is up at")
        output.wait_for("registered as node")
        with open(directory + "/data/admin-token", encoding="utf-8") as f:
            token = f.read().strip()
        yield Cluster(url=f"http://127.0.0.1:{port}", gateway=f"http://127.0.0.1:{gateway}", token=token, directory=directory,
                      process=process, output=output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path) -> Cluster:
    """The environment a user of this cluster has: FASTGPU_TOKEN and FASTGPU_GATEWAY set, no saved login."""
    monkeypatch.setenv("FASTGPU_TOKEN", cluster.token)
    monkeypatch.setenv("FASTGPU_GATEWAY", cluster.gateway)
    monkeypatch.setenv("FASTGPU_CONFIG", str(tmp_path / "no-config.json"))
    monkeypatch.setenv("FASTGPU_SERVE_PYTHON", os.environ.get("FASTGPU_SERVE_PYTHON") or sys.executable)
    monkeypatch.delenv("FASTGPU_SERVER", raising=False)
    monkeypatch.delenv("FASTGPU_PROJECT", raising=False)
    return cluster


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> str:
    """y = 2·x + 1 on a 64×64 float input, built here with onnx's helpers."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    one = numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["doubled"]), helper.make_node("Add", ["doubled", "one"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64, 64])],
        initializer=[two, one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = str(tmp_path_factory.mktemp("models") / "model.onnx")
    onnx.save(model, path)
    return path


def moto_binary() -> Optional[str]:
    here = os.path.join(os.path.dirname(sys.executable), "moto_server")
    return here if os.access(here, os.X_OK) else shutil.which("moto_server")


@pytest.fixture(scope="session")
def moto() -> Iterator[str]:
    binary = moto_binary()
    if binary is None:
        if os.environ.get("FASTGPU_REQUIRE_S3_TESTS"):
            pytest.fail("moto_server is not installed (pip install 'moto[server]')")
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    process = subprocess.Popen(["nice", "-n", "19", binary, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    output = Lines(process.stdout)
    try:
        output.wait_for("Running on", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
