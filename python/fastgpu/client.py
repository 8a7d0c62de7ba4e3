"""`Client`: FastGPU from Python, blocking. `AsyncClient` (fastgpu.aio) has the same surface."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import _ops, errors
from ._config import Settings, resolve
from ._core import SyncDriver, idempotency_key
from ._types import PendingReason, ResultRef, StepResult, pending_reason, step_result

Command = Union[str, Sequence[str]]


class _Surface:
    """What `Client` and `AsyncClient` share: settings and the bodies of requests."""

    settings: Settings

    def _job_body(self, command: Command, *, gpus: Union[int, str, None], gpu_type: Optional[str], memory: Optional[float],
                  name: Optional[str], project: Optional[str], env: Optional[Mapping[str, str]], image: Optional[str],
                  max_runtime: Union[int, float, str, None], cpus: Optional[float], ram: Optional[float], nodes: Optional[int],
                  retries: Optional[int], spot: Optional[bool], priority: Optional[str], inputs: Optional[Mapping[str, str]],
                  outputs: Optional[Mapping[str, str]], secrets: Optional[Mapping[str, str]]) -> Dict[str, Any]:
        body: Dict[str, Any] = {"project": project or self.settings.project, "command": _ops.command_list(command)}
        resources = _ops.gpu_request(gpus, gpu_type, memory)
        if cpus is not None:
            if isinstance(cpus, bool) or not 0 <= float(cpus) <= 100_000:
                raise errors.InvalidInput(f"cpus must be 0 to 100000 cores, not {cpus!r}")
            resources["cpuMillis"] = int(round(float(cpus) * 1000))
        if ram is not None:
            if isinstance(ram, bool) or not 0 < float(ram) <= 1024 * 1024:
                raise errors.InvalidInput(f"ram is GB of host memory, 0 to 1048576, not {ram!r}")
            resources["memoryMiB"] = int(float(ram) * _ops.GB / _ops.MIB)
        if resources:
            body["resources"] = resources
        if name is not None:
            body["name"] = name
        if env:
            body["env"] = {str(k): str(v) for k, v in env.items()}
        if secrets:
            body["secrets"] = {str(k): str(v) for k, v in secrets.items()}
        if image is not None:
            body["image"] = image
        runtime = _ops.seconds(max_runtime, "max_runtime")
        if runtime is not None:
            body["maxRuntimeSeconds"] = runtime
        if nodes is not None:
            if not 1 <= int(nodes) <= 4096:
                raise errors.InvalidInput(f"nodes must be 1 to 4096, not {nodes!r}")
            body["tasks"] = int(nodes)
            if nodes > 1:
                body["gang"] = True
        if retries is not None:
            if not 0 <= int(retries) <= 99:
                raise errors.InvalidInput(f"retries must be 0 to 99, not {retries!r}")
            body["maxAttempts"] = int(retries) + 1
        if spot is not None:
            body["spot"] = bool(spot)
        if priority is not None:
            body["priority"] = priority
        if inputs:
            body["inputs"] = [{"from": uri, "path": path} for path, uri in inputs.items()]
        if outputs:
            body["outputs"] = [{"path": path, "to": uri} for path, uri in outputs.items()]
        return body

    def _hold_body(self, num_gpus: int, memory: Optional[float], gpu_type: Optional[str], ttl: Union[int, float, str],
                   name: Optional[str], project: Optional[str], cpus: Optional[float], ram: Optional[float]) -> Dict[str, Any]:
        if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or not 1 <= num_gpus <= 1024:
            raise errors.InvalidInput(f"num_gpus must be a whole number from 1 to 1024, not {num_gpus!r}")
        seconds = _ops.seconds(ttl, "ttl")
        assert seconds is not None
        # The allocation holds its GPUs with a process that sleeps out the TTL; its runtime limit
        # ends it even if that process were gone.
        return self._job_body(["sleep", str(seconds)], gpus=num_gpus, gpu_type=gpu_type, memory=memory, name=name or "allocation",
                              project=project, env=None, image=None, max_runtime=seconds + 30, cpus=cpus, ram=ram, nodes=None,
                              retries=None, spot=None, priority=None, inputs=None, outputs=None, secrets=None)

    def _model_paths(self, model_file: Optional[str], function: Optional[str]) -> str:
        if model_file is None:
            raise errors.InvalidInput("deploy_model needs model_file: an .onnx file, or the .py file of function='module:function'")
        if not os.path.isfile(model_file):
            raise errors.ModelFileNotFound(f"no model file {model_file!r} (from {os.getcwd()})")
        if function is None and not model_file.endswith(".onnx"):
            raise errors.InvalidInput(f"{model_file!r} is not an .onnx file; for Python code pass function='module:function'")
        if function is not None and ":" not in function:
            raise errors.InvalidInput(f"function is 'module:function', not {function!r}")
        return model_file


class Client(_Surface):
    """A connection to a FastGPU server.

    Settings come from the arguments, then FASTGPU_SERVER / FASTGPU_TOKEN / FASTGPU_PROJECT /
    FASTGPU_GATEWAY, then the CLI's saved login, then a local `fastgpu up`::

        client = Client("http://127.0.0.1:8470")
        job = client.run("python train.py", gpus="H100:2")
        job.wait()
    """

    def __init__(self, server: Optional[str] = None, *, token: Optional[str] = None, project: Optional[str] = None,
                 gateway: Optional[str] = None, ca_file: Optional[str] = None, max_retries: int = 5) -> None:
        self.settings = resolve(server, token, project, gateway, ca_file)
        self._driver = SyncDriver(self.settings, max_retries)

    def __repr__(self) -> str:
        return f"Client({self.settings.server!r}, project={self.settings.project!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._driver.close()

    # MARK: Jobs

    def run(self, command: Command, *, gpus: Union[int, str, None] = None, gpu_type: Optional[str] = None, memory: Optional[float] = None,
            name: Optional[str] = None, project: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
            image: Optional[str] = None, max_runtime: Union[int, float, str, None] = None, cpus: Optional[float] = None,
            ram: Optional[float] = None, nodes: Optional[int] = None, retries: Optional[int] = None, spot: Optional[bool] = None,
            priority: Optional[str] = None, inputs: Optional[Mapping[str, str]] = None, outputs: Optional[Mapping[str, str]] = None,
            secrets: Optional[Mapping[str, str]] = None, idempotency_key: Optional[str] = None) -> "Job":
        """Submits a job; returns its handle at once (`.wait()` for the end).

        `command` is a string (run by `sh -c`) or a list. `gpus`: a count or the CLI's form
        ("H100:2", "24GB:2"); `memory`: at least this many GB on each GPU; `inputs` /
        `outputs`: {path: "s3://BACKEND/KEY"}; `max_runtime`: seconds or "2h"."""
        body = self._job_body(command, gpus=gpus, gpu_type=gpu_type, memory=memory, name=name, project=project, env=env, image=image,
                              max_runtime=max_runtime, cpus=cpus, ram=ram, nodes=nodes, retries=retries, spot=spot, priority=priority,
                              inputs=inputs, outputs=outputs, secrets=secrets)
        return Job(self, self._driver.run(_ops.submit(body, idempotency_key)))

    def job(self, job_id: int) -> "Job":
        return Job(self, self._driver.run(_ops.get_job(int(job_id))))

    def jobs(self, *, state: Optional[str] = None, project: Optional[str] = None, limit: int = 100) -> List["Job"]:
        return [Job(self, data) for data in self._driver.run(_ops.list_jobs(state, project, limit))]

    # MARK: GPUs held for the caller

    def request_gpus(self, num_gpus: int = 1, memory: Optional[float] = None, gpu_type: Optional[str] = None, *,
                     ttl: Union[int, float, str] = 3600, wait: Optional[float] = 600, name: Optional[str] = None,
                     project: Optional[str] = None, cpus: Optional[float] = None, ram: Optional[float] = None) -> "Allocation":
        """Holds `num_gpus` GPUs (each with at least `memory` GB, of `gpu_type` if given) for the
        caller until `release()` or `ttl` (seconds or "2h"), as Slurm's salloc; returns once they
        are granted (at most `wait` seconds; None: as long as it takes). GPUs that no node could
        ever host raise CapacityUnavailable at once.

            with client.request_gpus(num_gpus=2, memory=16) as gpus:
                print(gpus.run("nvidia-smi -L").stdout)
        """
        body = self._hold_body(num_gpus, memory, gpu_type, ttl, name, project, cpus, ram)
        return Allocation(self, self._driver.run(_ops.hold(body, idempotency_key(), wait)))

    # MARK: Models

    def deploy_model(self, model_file: Optional[str] = None, input_shape: Optional[Sequence[Optional[int]]] = None, *, gpus: Union[int, str, None] = 1,
                     memory: Optional[float] = None, gpu_type: Optional[str] = None, replicas: Tuple[int, int] = (0, 2),
                     function: Optional[str] = None, name: Optional[str] = None, dtype: Optional[str] = None,
                     project: Optional[str] = None, backend: Optional[str] = None, python: Optional[str] = None,
                     env: Optional[Mapping[str, str]] = None, concurrency: int = 8, files: Sequence[str] = ()) -> "Model":
        """Uploads the model and serves it: a service whose replicas run `python -m fastgpu.serve`
        (shipped with this SDK) on `gpus` each, between `replicas[0]` (0: scale to zero when idle)
        and `replicas[1]`. An ONNX file runs through onnxruntime; `function='module:function'`
        serves a Python callable from `model_file` (a .py file; more in `files`). Deploying again
        under the same name rolls the service out to the new model.

        The replica's `python` (default: FASTGPU_SERVE_PYTHON, else python3 on the node) needs
        numpy, and onnxruntime for ONNX."""
        path = self._model_paths(model_file, function)
        replicas = _check_replicas(replicas)
        service = name or _ops.service_name(os.path.splitext(os.path.basename(path))[0])
        resources = _ops.gpu_request(gpus, gpu_type, memory)
        data = self._driver.run(_ops.deploy(service, path, function, input_shape, dtype, resources, replicas, project or self.settings.project,
                                            backend, python, env, concurrency, files))
        return Model(self, data["name"], input_shape, dtype, url=data.get("url"))

    def model(self, name: str, input_shape: Optional[Sequence[Optional[int]]] = None, dtype: Optional[str] = None) -> "Model":
        """A handle on a model deployed before (by name)."""
        data = self._driver.run(_ops.get_service(name))
        return Model(self, data["name"], input_shape, dtype, url=data.get("url"))

    # MARK: Storage

    def save_result(self, obj: Any, bucket: str, prefix: str, *, name: Optional[str] = None, project: Optional[str] = None) -> ResultRef:
        """Uploads `obj` (bytes, a file path, a numpy array, or JSON-able data) to storage
        backend `bucket` (`local` on `fastgpu up`; `fastgpu storage ls` names them) under
        `prefix`, by presigned URL. The object's name is derived from its content, so repeating
        the call with the same content writes the same object once."""
        if not isinstance(bucket, str) or not bucket:
            raise errors.InvalidInput("bucket names a storage backend (fastgpu storage ls), e.g. 'local'")
        return ResultRef(**{k: v for k, v in self._driver.run(_ops.save_result(obj, bucket, prefix, name, project or self.settings.project)).items()})

    def upload(self, source: Union[str, bytes], uri: str, *, project: Optional[str] = None) -> ResultRef:
        """Uploads a file (path) or bytes to `s3://BACKEND/KEY` of the project."""
        backend, key = _ops.parse_uri(uri)
        data, content_type, _ = _ops.result_bytes(source if isinstance(source, (bytes, bytearray)) else os.fspath(source))
        stored = self._driver.run(_ops.upload(backend, key, data, project or self.settings.project, content_type))
        return ResultRef(uri=stored["uri"], size=stored["size"], sha256=stored["sha256"], backend=stored["backend"], key=key,
                         content_type=content_type, uploaded=stored["uploaded"])

    def download(self, uri: str, path: Optional[str] = None, *, project: Optional[str] = None) -> bytes:
        """The bytes of `s3://BACKEND/KEY` (written to `path` too when given)."""
        data = self._driver.run(_ops.download(uri, project or self.settings.project))
        if path:
            with open(path, "wb") as f:
                f.write(data)
        return data


def _check_replicas(replicas: Tuple[int, int]) -> Tuple[int, int]:
    try:
        low, high = (int(replicas[0]), int(replicas[1]))
    except (TypeError, ValueError, IndexError):
        raise errors.InvalidInput(f"replicas is (min, max), e.g. (0, 2), not {replicas!r}") from None
    if not 0 <= low <= high or high < 1 or high > 1000:
        raise errors.InvalidInput(f"replicas is (min, max) with 0 ≤ min ≤ max, 1 ≤ max ≤ 1000, not {replicas!r}")
    return low, high


def _show(name: str, value: Any, ended: Dict[str, Any]) -> None:
    """An item of `_ops.step_result`: output printed where it belongs, the ended step kept."""
    if name == "step":
        ended.update(value)
    else:
        (sys.stdout if name == "stdout" else sys.stderr).write(value)


class _JobData:
    """What a job handle reads from its last reply (shared by `Job` and `AsyncJob`)."""

    data: Dict[str, Any]

    @property
    def id(self) -> int:
        return int(self.data["id"])

    @property
    def state(self) -> str:
        return str(self.data.get("state"))

    @property
    def exit_code(self) -> Optional[int]:
        codes = [a.get("exitCode") for a in self.data.get("allocations", []) if a.get("exitCode") is not None]
        return codes[-1] if codes else None

    @property
    def finished(self) -> bool:
        return self.state in _ops.FINISHED

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id}, {self.state!r})"


class _ModelData:
    """A model's name, input shape and address (shared by `Model` and `AsyncModel`)."""

    def __init__(self, client: Any, name: str, input_shape: Optional[Sequence[Optional[int]]], dtype: Optional[str],
                 url: Optional[str] = None) -> None:
        self._client = client
        self.name = name
        #: Where the server says its gateway answers for the model (else FASTGPU_GATEWAY's).
        self._service_url = url
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.dtype = dtype or "float32"

    @property
    def url(self) -> str:
        if self._service_url and not self._client.settings.gateway_given:
            return self._service_url.rstrip("/") + "/predict"
        return f"{self._client.settings.gateway}/{self.name}/predict"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, input_shape={self.input_shape})"

    def _array(self, data: Any) -> Any:
        """`data` as the model takes it, its shape checked here (InvalidInput) before sending."""
        from . import _arrays

        array = _arrays.as_array(data, self.dtype)
        _arrays.check_shape(array, self.input_shape)
        return array


class Job(_JobData):
    """A job: `state`, `wait()`, `logs()`, `cancel()`, `why()`, `outputs()`."""

    def __init__(self, client: Client, data: Dict[str, Any]) -> None:
        self._client = client
        self.data = data

    def refresh(self) -> "Job":
        self.data = self._client._driver.run(_ops.get_job(self.id))
        return self

    def wait(self, timeout: Optional[float] = None, *, check: bool = False) -> "Job":
        """Blocks until the job has finished (at most `timeout` seconds: WaitTimeout); with
        `check`, a job that did not succeed raises JobFailed."""
        self.data = self._client._driver.run(_ops.wait_job(self.id, _ops.FINISHED, timeout))
        if check and self.state != "succeeded":
            raise errors.JobFailed(f"job {self.id} {self.state}" + (f" with exit code {self.exit_code}" if self.exit_code is not None else ""), job=self)
        return self

    def logs(self, follow: bool = False) -> Iterator[str]:
        """Its output, a line at a time; with `follow`, as it comes until the job ends."""
        return self._client._driver.iterate(_ops.logs(self.id, follow))

    def cancel(self) -> "Job":
        self.data = self._client._driver.run(_ops.cancel(self.id))
        return self

    def why(self) -> Optional[PendingReason]:
        """Why it is pending (None once it runs): the scheduler's typed reason and estimated start."""
        return pending_reason(self.refresh().data)

    def outputs(self) -> List[Dict[str, Any]]:
        """Its outputs: each with `uri`, `complete` and `files` (each with a presigned `url`)."""
        return list(self._client._driver.run(_ops.outputs(self.id)).get("outputs", []))


class Allocation:
    """GPUs held for the caller (see `Client.request_gpus`): `run()` commands on them,
    `release()` them (also on leaving a `with` block)."""

    def __init__(self, client: Client, data: Dict[str, Any]) -> None:
        self._client = client
        self.job = Job(client, data)

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def gpus(self) -> List[str]:
        """The devices held, as the node names them (gpu0, gpu1)."""
        return [d for a in self.job.data.get("allocations", []) if a.get("live") for d in a.get("devices", [])]

    @property
    def node(self) -> Optional[int]:
        live = [a for a in self.job.data.get("allocations", []) if a.get("live")]
        return live[0].get("node") if live else None

    def __repr__(self) -> str:
        return f"Allocation(job={self.id}, gpus={self.gpus})"

    def __enter__(self) -> "Allocation":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def run(self, command: Command, *, env: Optional[Mapping[str, str]] = None, check: bool = True, stream: bool = False,
            timeout: Optional[float] = None) -> StepResult:
        """Runs `command` on the held GPUs (their CUDA_VISIBLE_DEVICES, the allocation's work
        directory) and returns its output and exit code; `stream` prints the output as it comes;
        `check` raises StepFailed for a non-zero exit."""
        ended: Dict[str, Any] = {}
        for name, value in self._client._driver.iterate(_ops.step_streamed(self.id, _ops.command_list(command), env, stream, timeout)):
            _show(name, value, ended)
        return _checked(step_result(ended), check)

    def release(self) -> None:
        """Gives the GPUs back (the allocation's job ends cancelled); idempotent."""
        if not self.job.finished:
            self.job.cancel()


def _checked(result: StepResult, check: bool) -> StepResult:
    if check and not result.ok:
        tail = result.stderr.strip().splitlines()[-3:]
        why = f": {' / '.join(tail)}" if tail else ""
        what = "was lost with its allocation" if result.state == "lost" else f"exited with {result.exit_code}"
        raise errors.StepFailed(f"{_ops.quote(result.command or [])} {what}{why}", result=result)
    return result


class Model(_ModelData):
    """A deployed model: `predict(data)` through the gateway."""

    def predict(self, data: Any, *, timeout: float = 300) -> Any:
        """Sends `data` (shape `input_shape` or a batch of it) and returns the model's answer: a
        numpy array, or the function's JSON. A model scaled to zero wakes for it: the call waits
        for the replica (up to `timeout`), it does not fail."""
        return self._client._driver.run(_ops.predict(self.name, self.url, self._client.settings.token, self._array(data), timeout))

    def status(self) -> Dict[str, Any]:
        return dict(self._client._driver.run(_ops.get_service(self.name)))

    def delete(self) -> None:
        self._client._driver.run(_ops.delete_service(self.name))
