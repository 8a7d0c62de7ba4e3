"""`AsyncClient`: the same surface as `Client`, for asyncio (every call is awaited, `logs()`
is an async iterator, handles are async context managers)."""

from __future__ import annotations

import os
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _ops, errors
from ._config import resolve
from ._core import AsyncDriver, idempotency_key
from ._types import PendingReason, ResultRef, StepResult, pending_reason, step_result
from .client import Command, _check_replicas, _checked, _JobData, _ModelData, _show, _Surface


class AsyncClient(_Surface):
    """A connection to a FastGPU server for asyncio; see `Client` for each method."""

    def __init__(self, server: Optional[str] = None, *, token: Optional[str] = None, project: Optional[str] = None,
                 gateway: Optional[str] = None, ca_file: Optional[str] = None, max_retries: int = 5) -> None:
        self.settings = resolve(server, token, project, gateway, ca_file)
        self._driver = AsyncDriver(self.settings, max_retries)

    def __repr__(self) -> str:
        return f"AsyncClient({self.settings.server!r}, project={self.settings.project!r})"

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._driver.close()

    async def run(self, command: Command, *, gpus: Union[int, str, None] = None, gpu_type: Optional[str] = None, memory: Optional[float] = None,
                  name: Optional[str] = None, project: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                  image: Optional[str] = None, max_runtime: Union[int, float, str, None] = None, cpus: Optional[float] = None,
                  ram: Optional[float] = None, nodes: Optional[int] = None, retries: Optional[int] = None, spot: Optional[bool] = None,
                  priority: Optional[str] = None, inputs: Optional[Mapping[str, str]] = None, outputs: Optional[Mapping[str, str]] = None,
                  secrets: Optional[Mapping[str, str]] = None, idempotency_key: Optional[str] = None) -> "AsyncJob":
        body = self._job_body(command, gpus=gpus, gpu_type=gpu_type, memory=memory, name=name, project=project, env=env, image=image,
                              max_runtime=max_runtime, cpus=cpus, ram=ram, nodes=nodes, retries=retries, spot=spot, priority=priority,
                              inputs=inputs, outputs=outputs, secrets=secrets)
        return AsyncJob(self, await self._driver.run(_ops.submit(body, idempotency_key)))

    async def job(self, job_id: int) -> "AsyncJob":
        return AsyncJob(self, await self._driver.run(_ops.get_job(int(job_id))))

    async def jobs(self, *, state: Optional[str] = None, project: Optional[str] = None, limit: int = 100) -> List["AsyncJob"]:
        return [AsyncJob(self, data) for data in await self._driver.run(_ops.list_jobs(state, project, limit))]

    async def request_gpus(self, num_gpus: int = 1, memory: Optional[float] = None, gpu_type: Optional[str] = None, *,
                           ttl: Union[int, float, str] = 3600, wait: Optional[float] = 600, name: Optional[str] = None,
                           project: Optional[str] = None, cpus: Optional[float] = None, ram: Optional[float] = None) -> "AsyncAllocation":
        body = self._hold_body(num_gpus, memory, gpu_type, ttl, name, project, cpus, ram)
        return AsyncAllocation(self, await self._driver.run(_ops.hold(body, idempotency_key(), wait)))

    async def deploy_model(self, model_file: Optional[str] = None, input_shape: Optional[Sequence[Optional[int]]] = None, *,
                           gpus: Union[int, str, None] = 1, memory: Optional[float] = None, gpu_type: Optional[str] = None,
                           replicas: Tuple[int, int] = (0, 2), function: Optional[str] = None, name: Optional[str] = None,
                           dtype: Optional[str] = None, project: Optional[str] = None, backend: Optional[str] = None,
                           python: Optional[str] = None, env: Optional[Mapping[str, str]] = None, concurrency: int = 8,
                           files: Sequence[str] = ()) -> "AsyncModel":
        path = self._model_paths(model_file, function)
        replicas = _check_replicas(replicas)
        service = name or _ops.service_name(os.path.splitext(os.path.basename(path))[0])
        resources = _ops.gpu_request(gpus, gpu_type, memory)
        data = await self._driver.run(_ops.deploy(service, path, function, input_shape, dtype, resources, replicas,
                                                  project or self.settings.project, backend, python, env, concurrency, files))
        return AsyncModel(self, data["name"], input_shape, dtype, url=data.get("url"))

    async def model(self, name: str, input_shape: Optional[Sequence[Optional[int]]] = None, dtype: Optional[str] = None) -> "AsyncModel":
        data = await self._driver.run(_ops.get_service(name))
        return AsyncModel(self, data["name"], input_shape, dtype, url=data.get("url"))

    async def save_result(self, obj: Any, bucket: str, prefix: str, *, name: Optional[str] = None, project: Optional[str] = None) -> ResultRef:
        if not isinstance(bucket, str) or not bucket:
            raise errors.InvalidInput("bucket names a storage backend (fastgpu storage ls), e.g. 'local'")
        return ResultRef(**await self._driver.run(_ops.save_result(obj, bucket, prefix, name, project or self.settings.project)))

    async def upload(self, source: Union[str, bytes], uri: str, *, project: Optional[str] = None) -> ResultRef:
        backend, key = _ops.parse_uri(uri)
        data, content_type, _ = _ops.result_bytes(source if isinstance(source, (bytes, bytearray)) else os.fspath(source))
        stored = await self._driver.run(_ops.upload(backend, key, data, project or self.settings.project, content_type))
        return ResultRef(uri=stored["uri"], size=stored["size"], sha256=stored["sha256"], backend=stored["backend"], key=key,
                         content_type=content_type, uploaded=stored["uploaded"])

    async def download(self, uri: str, path: Optional[str] = None, *, project: Optional[str] = None) -> bytes:
        data = await self._driver.run(_ops.download(uri, project or self.settings.project))
        if path:
            with open(path, "wb") as f:
                f.write(data)
        return data


class AsyncJob(_JobData):
    def __init__(self, client: AsyncClient, data: Dict[str, Any]) -> None:
        self._client = client
        self.data = data

    async def refresh(self) -> "AsyncJob":
        self.data = await self._client._driver.run(_ops.get_job(self.id))
        return self

    async def wait(self, timeout: Optional[float] = None, *, check: bool = False) -> "AsyncJob":
        self.data = await self._client._driver.run(_ops.wait_job(self.id, _ops.FINISHED, timeout))
        if check and self.state != "succeeded":
            raise errors.JobFailed(f"job {self.id} {self.state}", job=self)
        return self

    def logs(self, follow: bool = False) -> AsyncIterator[str]:
        return self._client._driver.iterate(_ops.logs(self.id, follow))

    async def cancel(self) -> "AsyncJob":
        self.data = await self._client._driver.run(_ops.cancel(self.id))
        return self

    async def why(self) -> Optional[PendingReason]:
        return pending_reason((await self.refresh()).data)

    async def outputs(self) -> List[Dict[str, Any]]:
        return list((await self._client._driver.run(_ops.outputs(self.id))).get("outputs", []))


class AsyncAllocation:
    def __init__(self, client: AsyncClient, data: Dict[str, Any]) -> None:
        self._client = client
        self.job = AsyncJob(client, data)

    id = property(lambda self: self.job.id)

    @property
    def gpus(self) -> List[str]:
        return [d for a in self.job.data.get("allocations", []) if a.get("live") for d in a.get("devices", [])]

    def __repr__(self) -> str:
        return f"AsyncAllocation(job={self.id}, gpus={self.gpus})"

    async def __aenter__(self) -> "AsyncAllocation":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.release()

    async def run(self, command: Command, *, env: Optional[Mapping[str, str]] = None, check: bool = True, stream: bool = False,
                  timeout: Optional[float] = None) -> StepResult:
        ended: Dict[str, Any] = {}
        async for name, value in self._client._driver.iterate(_ops.step_streamed(self.id, _ops.command_list(command), env, stream, timeout)):
            _show(name, value, ended)
        return _checked(step_result(ended), check)

    async def release(self) -> None:
        if not self.job.finished:
            await self.job.cancel()


class AsyncModel(_ModelData):
    async def predict(self, data: Any, *, timeout: float = 300) -> Any:
        return await self._client._driver.run(_ops.predict(self.name, self.url, self._client.settings.token, self._array(data), timeout))

    async def delete(self) -> None:
        await self._client._driver.run(_ops.delete_service(self.name))
