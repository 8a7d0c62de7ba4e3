"""Every operation of the SDK, once (see `_core`)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _arrays, errors
from ._core import Call, Emit, Op, Sleep, idempotency_key, monotonic

FINISHED = ("succeeded", "failed", "cancelled")
GB = 1_000_000_000
MIB = 1_048_576


# MARK: - Requests as the API takes them

def gpu_request(gpus: Union[int, str, None], gpu_type: Optional[str], memory: Optional[float]) -> Dict[str, Any]:
    """`gpus` as the CLI's --gpus (2, "H100:2", "24GB:2", "H100:80GB:8") or a count, with
    `gpu_type` (a model, H100 or A100-80GB) and `memory` (at least this many GB per GPU, as
    vendors count them: 10⁹ bytes) beside it."""
    resources: Dict[str, Any] = {}
    model, count, floor = None, 0, None
    if isinstance(gpus, bool):
        raise errors.InvalidInput("gpus must be a count or a request such as 'H100:2', not a bool")
    if isinstance(gpus, int):
        count = gpus
    elif isinstance(gpus, str):
        parts = gpus.split(":")
        count = 1
        if parts and re.fullmatch(r"[0-9]+", parts[-1]):
            count = int(parts.pop())
        if parts and re.fullmatch(r"[0-9]{1,4}[Gg][Bb]?", parts[-1]):
            floor = int(re.match(r"[0-9]+", parts.pop()).group()) * GB / MIB  # type: ignore[union-attr]
        if len(parts) > 1 or (parts and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.|-]*", parts[0])):
            raise errors.InvalidInput(f"gpus must look like 2, 'H100:2', '24GB:2' or 'H100:80GB:8', not {gpus!r}")
        model = parts[0] if parts else None
    elif gpus is not None:
        raise errors.InvalidInput(f"gpus must be a count or a string such as 'H100:2', not {type(gpus).__name__}")
    if not 0 <= count <= 1024:
        raise errors.InvalidInput(f"gpus must be 0 to 1024, not {count}")
    if gpu_type is not None:
        if model is not None and model != gpu_type:
            raise errors.InvalidInput(f"gpus={gpus!r} and gpu_type={gpu_type!r} name two GPU models")
        if not isinstance(gpu_type, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.|-]*", gpu_type):
            raise errors.InvalidInput(f"gpu_type must be a GPU model such as 'H100' or 'A100-80GB', not {gpu_type!r}")
        model = gpu_type
    if memory is not None:
        if isinstance(memory, bool) or not isinstance(memory, (int, float)) or not 0 < memory <= 16384:
            raise errors.InvalidInput(f"memory is GB per GPU, a number from 1 to 16384, not {memory!r}")
        if floor is not None:
            raise errors.InvalidInput(f"gpus={gpus!r} already says the memory per GPU; drop memory=")
        floor = memory * GB / MIB
    if count > 0:
        resources["gpus"] = count
        if model:
            resources["gpuModel"] = model
        if floor is not None:
            resources["minGpuMemoryMiB"] = int(floor)
    elif model or floor is not None:
        raise errors.InvalidInput("gpu_type and memory go with one or more GPUs (gpus=1 or more)")
    return resources


def seconds(value: Union[int, float, str, None], what: str) -> Optional[int]:
    """90, 90.0, '90s', '30m', '2h', '1d', '1h30m'."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise errors.InvalidInput(f"{what} must be seconds or a duration such as '2h', not a bool")
    if isinstance(value, (int, float)):
        total = float(value)
    else:
        parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)([smhd])", value.strip())
        if not parts or "".join(a + b for a, b in parts) != value.strip().replace(" ", ""):
            if re.fullmatch(r"[0-9]+", value.strip()):
                parts = [(value.strip(), "s")]
            else:
                raise errors.InvalidInput(f"{what} must be seconds or a duration such as 90s, 30m or 2h, not {value!r}")
        total = sum(float(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[u] for n, u in parts)
    if not 1 <= total <= 366 * 86400:
        raise errors.InvalidInput(f"{what} must be 1 second to 366 days, not {value!r}")
    return int(round(total))


def command_list(command: Union[str, Sequence[str]]) -> List[str]:
    """A string runs under `sh -c` (pipes, globs, `&&`); a list runs as written."""
    if isinstance(command, str):
        if not command.strip():
            raise errors.InvalidInput("the command is empty")
        return ["sh", "-c", command]
    items = list(command)
    if not items or not all(isinstance(a, str) for a in items):
        raise errors.InvalidInput("the command must be a string or a non-empty list of strings")
    return items


def parse_uri(uri: str) -> Tuple[str, str]:
    """`s3://BACKEND/KEY` → (backend, key)."""
    match = re.fullmatch(r"s3://([^/]+)/(.+)", uri or "")
    if not match:
        raise errors.InvalidInput(f"a storage location looks like s3://BACKEND/KEY, not {uri!r}")
    return match.group(1), match.group(2)


def service_name(text: str) -> str:
    """A service name from a file name: lower-case letters, digits and '-', starting with a letter."""
    base = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not base or not base[0].isalpha():
        base = "model-" + base
    return base[:40].rstrip("-")


# MARK: - Jobs

def submit(body: Dict[str, Any], key: Optional[str] = None) -> "Op[Dict[str, Any]]":
    reply = yield Call("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key or idempotency_key()})
    return reply.json()


def get_job(job: int) -> "Op[Dict[str, Any]]":
    reply = yield Call("GET", f"/v1/jobs/{job}")
    return reply.json()


def wait_job(job: int, until: Sequence[str], timeout: Optional[float], what: str = "finish") -> "Op[Dict[str, Any]]":
    """The job once its state is one of `until`, by blocking queries (no polling interval)."""
    deadline = None if timeout is None else monotonic() + timeout
    index = 0
    while True:
        wait = 30.0 if deadline is None else max(0.0, min(30.0, deadline - monotonic()))
        params = {"index": index, "wait": f"{int(wait * 1000)}ms"} if index else None
        reply = yield Call("GET", f"/v1/jobs/{job}", params=params, timeout=wait + 30)
        data = reply.json()
        if data.get("state") in until:
            return data
        if deadline is not None and monotonic() >= deadline:
            raise errors.WaitTimeout(f"job {job} did not {what} within {timeout:g} s; it is {data.get('state')}")
        index = int(reply.headers.get("x-fastgpu-index", index) or index)
        if not index:
            yield Sleep(0.5)


def list_jobs(state: Optional[str], project: Optional[str], limit: int) -> "Op[List[Dict[str, Any]]]":
    reply = yield Call("GET", "/v1/jobs", params={"state": state, "project": project, "limit": limit})
    return list(reply.json().get("items", []))


def get_service(name: str) -> "Op[Dict[str, Any]]":
    reply = yield Call("GET", f"/v1/services/{name}")
    return reply.json()


def delete_service(name: str) -> "Op[None]":
    yield Call("DELETE", f"/v1/services/{name}", accept=(404,))


def step_streamed(job: int, command: List[str], env: Optional[Mapping[str, str]], stream: bool, timeout: Optional[float]) -> "Op[None]":
    """`step`, its output emitted as it comes when `stream`, and the ended step emitted last as
    ("step", data): one iteration gives a caller both."""
    data = yield from step(job, command, env, stream, timeout)
    yield Emit(("step", data))


def cancel(job: int) -> "Op[Dict[str, Any]]":
    reply = yield Call("POST", f"/v1/jobs/{job}/cancel", retry_safe=True)
    return reply.json()


def outputs(job: int) -> "Op[Dict[str, Any]]":
    reply = yield Call("GET", f"/v1/jobs/{job}/outputs")
    return reply.json()


def logs(job: int, follow: bool) -> "Op[None]":
    """Emits the job's output, a line at a time (with its newline), in order; with `follow`,
    until the job has finished and everything it wrote is read."""
    position = 0
    index = 0
    partial = ""
    while True:
        reply = yield Call("GET", f"/v1/jobs/{job}/logs", params={"after": position} if position else None)
        lines = [json.loads(line) for line in reply.content.decode("utf-8", "replace").splitlines() if line.strip()]
        for line in lines:
            position = max(position, int(line.get("position", position)))
            text = partial + line.get("text", "")
            pieces = text.split("\n")
            partial = pieces.pop()
            for piece in pieces:
                yield Emit(piece + "\n")
        if lines:
            continue
        state = yield from get_job(job)
        if not follow or state.get("state") in FINISHED:
            # What was read of the job at its end is all there is (the agent ships before it reports).
            if state.get("state") in FINISHED:
                reply = yield Call("GET", f"/v1/jobs/{job}/logs", params={"after": position} if position else None)
                if reply.content.strip():
                    continue
            if partial:
                yield Emit(partial)
            return
        reply = yield Call("GET", f"/v1/jobs/{job}", params={"index": index, "wait": "15s"} if index else {"wait": "1ms"}, timeout=45)
        index = int(reply.headers.get("x-fastgpu-index", index) or index)


# MARK: - Held GPUs and steps

def hold(body: Dict[str, Any], key: str, wait: Optional[float]) -> "Op[Dict[str, Any]]":
    """Submits a job that holds its GPUs (`sleep TTL`) and waits until it runs; one that no node
    could ever host is cancelled and said so."""
    job = yield from submit(body, key)
    deadline = None if wait is None else monotonic() + wait
    index = 0
    while True:
        if job.get("state") == "running" and any(a.get("runningSince") for a in job.get("allocations", [])):
            return job
        if job.get("state") in FINISHED:
            raise errors.JobFailed(f"the allocation (job {job['id']}) ended {job.get('state')} before it ran", job=job)
        reason = (job.get("queue") or {}).get("reason") or {}
        if reason.get("kind") == "never":
            yield from cancel(job["id"])
            raise errors.CapacityUnavailable(409, reason.get("code") or "never", reason.get("message") or "no node could ever host it")
        if deadline is not None and monotonic() >= deadline:
            yield from cancel(job["id"])
            why = f": {reason.get('message')}" if reason.get("message") else ""
            raise errors.WaitTimeout(f"the GPUs were not granted within {wait:g} s (job {job['id']} cancelled){why}")
        budget = 30.0 if deadline is None else max(0.001, min(30.0, deadline - monotonic()))
        params = {"index": index, "wait": f"{int(budget * 1000)}ms"} if index else None
        reply = yield Call("GET", f"/v1/jobs/{job['id']}", params=params, timeout=budget + 30)
        job = reply.json()
        new = int(reply.headers.get("x-fastgpu-index", index) or index)
        if new == index or not new:
            yield Sleep(0.2)
        index = new


def step(job: int, command: List[str], env: Optional[Mapping[str, str]], stream: bool, timeout: Optional[float]) -> "Op[Dict[str, Any]]":
    """Runs a step and returns it ended; with `stream`, emits ("stdout"|"stderr", text) as it comes."""
    body: Dict[str, Any] = {"command": command}
    if env:
        body["env"] = dict(env)
    reply = yield Call("POST", f"/v1/jobs/{job}/steps", json=body, retry_safe=False)
    current = reply.json()
    deadline = None if timeout is None else monotonic() + timeout
    shown = {"stdout": 0, "stderr": 0}
    while True:
        if stream:
            for name in ("stdout", "stderr"):
                # The totals say how much is new; the kept text (the last 1 MiB) ends with it.
                total = int(current.get(name + "Bytes", 0))
                data = current.get(name, "").encode()
                new = min(len(data), total - shown[name])
                if new > 0:
                    yield Emit((name, data[len(data) - new:].decode("utf-8", "replace")))
                shown[name] = total
        if current.get("state") in ("succeeded", "failed", "lost"):
            return current
        if deadline is not None and monotonic() >= deadline:
            raise errors.WaitTimeout(f"step {current['id']} of job {job} did not end within {timeout:g} s (it still runs)")
        reply = yield Call("GET", f"/v1/jobs/{job}/steps/{current['id']}", params={"after": current.get("version", 0), "wait": "10s"}, timeout=40)
        current = reply.json()


# MARK: - Storage

def presign(backend: Optional[str], key: str, method: str, project: str, expires: int = 900) -> "Op[Dict[str, Any]]":
    body: Dict[str, Any] = {"project": project, "key": key, "method": method, "expiresSeconds": expires}
    if backend:
        body["backend"] = backend
    reply = yield Call("POST", "/v1/storage/presign", json=body, retry_safe=True)
    return reply.json()


def upload(backend: Optional[str], key: str, data: bytes, project: str, content_type: str = "application/octet-stream",
           skip_if_same: bool = True) -> "Op[Dict[str, Any]]":
    """Puts `data` at the key through a presigned URL; an object of the same size and sha256
    already there is left as it is (a repeated call uploads nothing)."""
    digest = hashlib.sha256(data).hexdigest()
    if skip_if_same:
        # S3's ETag of an object put in one request is the MD5 of its bytes.
        head = yield from presign(backend, key, "HEAD", project)
        reply = yield Call("HEAD", url=head["url"], accept=(403, 404), timeout=60)
        etag = reply.headers.get("etag", "").strip('"')
        if reply.status == 200 and etag == hashlib.md5(data).hexdigest() and int(reply.headers.get("content-length", -1)) == len(data):
            return {**head, "sha256": digest, "size": len(data), "uploaded": False}
    put = yield from presign(backend, key, "PUT", project)
    yield Call("PUT", url=put["url"], content=data, headers={"Content-Type": content_type}, timeout=600)
    return {**put, "sha256": digest, "size": len(data), "uploaded": True}


def download(uri: str, project: str) -> "Op[bytes]":
    backend, key = parse_uri(uri)
    got = yield from presign(backend, key, "GET", project)
    reply = yield Call("GET", url=got["url"], timeout=600)
    return reply.content


def result_bytes(obj: Any) -> Tuple[bytes, str, str]:
    """The bytes of a result, its content type and its file extension."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj), "application/octet-stream", ".bin"
    if isinstance(obj, os.PathLike) or (isinstance(obj, str) and os.path.isfile(obj)):
        path = os.fspath(obj)
        with open(path, "rb") as f:
            data = f.read()
        return data, "application/octet-stream", os.path.splitext(path)[1] or ".bin"
    if type(obj).__module__ == "numpy" and hasattr(obj, "dtype"):
        return _arrays.to_npy(obj), _arrays.NPY, ".npy"
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode(), "application/json", ".json"
    except (TypeError, ValueError):
        raise errors.InvalidInput(f"a result is bytes, a file path, a numpy array or JSON-able data, not {type(obj).__name__}") from None


def save_result(obj: Any, bucket: str, prefix: str, name: Optional[str], project: str) -> "Op[Dict[str, Any]]":
    data, content_type, extension = result_bytes(obj)
    digest = hashlib.sha256(data).hexdigest()
    prefix = prefix.strip("/")
    if not prefix or ".." in prefix.split("/"):
        raise errors.InvalidInput(f"prefix must be a path such as 'run-1' or 'exp/run-1', not {prefix!r}")
    file_name = name or f"result-{digest[:16]}{extension}"
    if "/" in file_name or file_name in (".", ".."):
        raise errors.InvalidInput(f"name must be a file name, not {file_name!r}")
    stored = yield from upload(bucket, f"{prefix}/{file_name}", data, project, content_type)
    return {"uri": stored["uri"], "size": len(data), "sha256": digest, "backend": stored["backend"], "key": f"{prefix}/{file_name}",
            "content_type": content_type, "uploaded": stored["uploaded"]}


# MARK: - Models

def sdk_archive() -> bytes:
    """This package as a zip, for `python -m fastgpu.serve` on the replicas (PYTHONPATH=zip):
    the same bytes for the same sources, so it is uploaded once."""
    root = os.path.dirname(os.path.abspath(__file__))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(os.listdir(root)):
            if name.endswith(".py") or name == "py.typed":
                info = zipfile.ZipInfo("fastgpu/" + name, date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with open(os.path.join(root, name), "rb") as f:
                    archive.writestr(info, f.read())
    return buffer.getvalue()


def deploy(name: str, model_path: str, function: Optional[str], input_shape: Optional[Sequence[int]], dtype: Optional[str],
           gpus: Dict[str, Any], replicas: Tuple[int, int], project: str, backend: Optional[str], python: Optional[str],
           env: Optional[Mapping[str, str]], concurrency: int, extra_files: Sequence[str]) -> "Op[Dict[str, Any]]":
    """Uploads the model file (and this SDK), then creates the service, or revises it when one
    of that name exists (a rollout with no unavailable replica)."""
    with open(model_path, "rb") as f:
        model = f.read()
    digest = hashlib.sha256(model).hexdigest()
    file_name = os.path.basename(model_path)
    stored = yield from upload(backend, f".fastgpu/models/{digest[:24]}/{file_name}", model, project)
    sdk = sdk_archive()
    sdk_stored = yield from upload(backend, f".fastgpu/sdk/fastgpu-{hashlib.sha256(sdk).hexdigest()[:24]}.zip", sdk, project)
    inputs = [{"from": stored["uri"], "path": file_name}, {"from": sdk_stored["uri"], "path": "fastgpu-sdk.zip"}]
    for extra in extra_files:
        with open(extra, "rb") as f:
            data = f.read()
        extra_stored = yield from upload(backend, f".fastgpu/files/{hashlib.sha256(data).hexdigest()[:24]}/{os.path.basename(extra)}", data, project)
        inputs.append({"from": extra_stored["uri"], "path": os.path.basename(extra)})
    command = [python or os.environ.get("FASTGPU_SERVE_PYTHON") or "python3", "-m", "fastgpu.serve"]
    command += ["--function", function] if function else ["--model", file_name]
    if input_shape is not None:
        # One word: "--input-shape -1,4" would read -1,4 as an option.
        command += ["--input-shape=" + ",".join(str(-1 if d is None else int(d)) for d in input_shape)]
    if dtype:
        command += ["--dtype", dtype]
    spec: Dict[str, Any] = {
        "name": name, "project": project, "command": command,
        "env": {"PYTHONPATH": "fastgpu-sdk.zip", "PYTHONUNBUFFERED": "1", **(dict(env) if env else {})},
        "replicas": {"min": replicas[0], "max": replicas[1]},
        "readiness": {"path": "/healthz"},
        "concurrencyLimit": concurrency,
        "inputs": inputs,
    }
    if gpus:
        spec["resources"] = gpus
    reply = yield Call("POST", "/v1/services", json=spec, accept=(409,), retry_safe=True)
    if reply.status == 409:
        reply = yield Call("PUT", f"/v1/services/{name}", json=spec)
    return reply.json()


def predict(name: str, url: str, token: str, array: Any, timeout: float) -> "Op[Any]":
    """One prediction, sent once (a model's work is not repeated on a lost answer). While the
    gateway answers 503 (no replica could take it in time: the service is waking, or full), it is
    sent again until `timeout`; a service whose replicas keep exiting before they serve says so."""
    body, content_type = _arrays.encode_input(array)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type, "Accept": f"{_arrays.NPY}, application/json"}
    deadline = monotonic() + timeout
    while True:
        left = max(1.0, deadline - monotonic())
        reply = yield Call("POST", url=url, content=body, headers=headers, timeout=left, retry_safe=False, accept=(503,), retry_503=False)
        if reply.status != 503:
            return _arrays.decode_output(reply.headers.get("content-type", ""), reply.content)
        events = yield Call("GET", f"/v1/services/{name}/events", accept=(403, 404))
        # Failing: the latest of its replicas' news is a restart held back, not a ready replica
        # or a new revision.
        news = [e for e in (events.json() or {}).get("items", []) if e.get("kind") in ("restartBackoff", "replicaReady", "created", "revised")] \
            if events.status == 200 else []
        if news and news[-1].get("kind") == "restartBackoff":
            raise errors.CapacityUnavailable(503, "replicas_failing", f"model {name} cannot serve: {news[-1].get('message')} "
                                             f"(fastgpu services logs {name})")
        if monotonic() >= deadline:
            raise errors.CapacityUnavailable(503, "no_replica", f"model {name} had no replica for the request within {timeout:g} s")
        retry = reply.headers.get("retry-after")
        yield Sleep(min(5.0, float(retry)) if retry and retry.replace(".", "", 1).isdigit() else 1.0)


def quote(command: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in command)
