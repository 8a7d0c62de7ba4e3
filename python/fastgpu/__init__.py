"""FastGPU's Python SDK.

    from fastgpu import Client
    client = Client("http://127.0.0.1:8470")
    gpus = client.request_gpus(num_gpus=2, memory=16)
    model = client.deploy_model(model_file="model.onnx", input_shape=(64, 64))
    output = model.predict(data)
    client.save_result(output, bucket="local", prefix="run-1")

`Client` blocks; `AsyncClient` is the same for asyncio. Errors are in `fastgpu.errors` (and here).
`python -m fastgpu.serve` is the model server `deploy_model` runs on replicas; it needs only
numpy (and onnxruntime for ONNX), not httpx, so the client classes are imported on first use.
"""

from __future__ import annotations

from typing import Any

from .errors import (APIConnectionError, APIStatusError, APITimeoutError, AuthenticationError, BudgetExhausted, CapacityUnavailable, Conflict,
                     FastGPUError, InvalidInput, InvalidRequest, JobFailed, ModelFileNotFound, NotFound, PermissionDenied,
                     RateLimited, StepFailed, WaitTimeout)

__version__ = "0.1.0"

__all__ = [
    "Client", "AsyncClient", "Job", "Allocation", "Model", "AsyncJob", "AsyncAllocation", "AsyncModel",
    "PendingReason", "StepResult", "ResultRef",
    "FastGPUError", "APIConnectionError", "APITimeoutError", "APIStatusError", "InvalidRequest", "AuthenticationError", "BudgetExhausted",
    "PermissionDenied", "NotFound", "Conflict", "RateLimited", "CapacityUnavailable", "InvalidInput", "ModelFileNotFound",
    "JobFailed", "StepFailed", "WaitTimeout",
]

_LAZY = {
    "Client": "client", "Job": "client", "Allocation": "client", "Model": "client",
    "AsyncClient": "aio", "AsyncJob": "aio", "AsyncAllocation": "aio", "AsyncModel": "aio",
    "PendingReason": "_types", "StepResult": "_types", "ResultRef": "_types",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastgpu' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
