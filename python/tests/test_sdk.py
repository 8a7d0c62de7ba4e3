"""The SDK against a real server: jobs, held GPUs and their steps, storage, errors, and the
asyncio client; then retries and idempotency keys against a scripted transport."""

from __future__ import annotations

import asyncio
import io
import json
import traceback

import httpx
import numpy as np
import pytest

import fastgpu
from fastgpu import Client
from fastgpu._config import resolve
from fastgpu._core import Call, SyncDriver

from conftest import free_port


def test_a_job_runs_its_output_comes_back_and_its_files_are_stored(env):
    client = Client(env.url)
    job = client.run("echo hello from $CUDA_VISIBLE_DEVICES; mkdir -p out; echo 0.25 > out/loss.txt", gpus=1,
                     outputs={"out": "s3://local/results/{job_id}/"})
    assert job.wait(timeout=120, check=True).state == "succeeded"
    devices = [d.replace("gpu", "") for a in job.data["allocations"] for d in a["devices"]]
    assert list(job.logs()) == [f"hello from {','.join(devices)}\n"]
    files = [f for output in job.outputs() for f in output["files"]]
    assert [f["path"] for f in files] == ["loss.txt"]
    assert client.download(f"s3://local/results/{job.id}/loss.txt") == b"0.25\n"


def test_logs_follow_a_running_job_to_its_end(env):
    client = Client(env.url)
    job = client.run(["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.2; done"])
    lines = list(job.logs(follow=True))
    assert job.refresh().state == "succeeded"
    assert lines == ["line 1\n", "line 2\n", "line 3\n"], (job.data["allocations"], list(job.logs()))


def test_a_job_no_node_can_host_says_why_and_is_cancelled(env):
    client = Client(env.url)
    job = client.run("true", gpus=64)
    reason = None
    for _ in range(50):
        reason = job.why()
        if reason is not None:
            break
    assert reason is not None and reason.kind == "never", reason
    assert job.cancel().state == "cancelled"
    with pytest.raises(fastgpu.JobFailed):
        job.wait(check=True)


def test_held_gpus_run_steps_and_a_failing_step_says_so(env, capsys):
    client = Client(env.url)
    with client.request_gpus(num_gpus=1, ttl="10m") as gpus:
        gpus.run("echo streamed; echo also >&2", stream=True)
        printed = capsys.readouterr()
        assert (printed.out, printed.err) == ("streamed\n", "also\n")
        result = gpus.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
        assert (result.state, result.exit_code, result.stdout, result.stderr) == ("failed", 3, "out\n", "err\n")
        with pytest.raises(fastgpu.StepFailed, match="exited with 3"):
            gpus.run("exit 3")
        # A file one step writes, the next one reads: the allocation's work directory.
        gpus.run("echo kept > note.txt")
        assert gpus.run("cat note.txt").stdout == "kept\n"
    assert gpus.job.refresh().state == "cancelled"


def test_gpus_no_node_has_are_refused_at_once(env):
    client = Client(env.url)
    with pytest.raises(fastgpu.CapacityUnavailable) as caught:
        client.request_gpus(num_gpus=1, memory=200)
    assert "MiB of memory" in str(caught.value)
    with pytest.raises(fastgpu.InvalidInput):
        client.request_gpus(num_gpus=0)


def test_work_the_budget_cannot_hold_is_refused_with_budget_exhausted(env):
    admin = {"Authorization": f"Bearer {env.token}"}
    created = httpx.post(f"{env.url}/v1/projects", json={"name": "capped"}, headers=admin)
    assert created.status_code in (201, 409)
    # 1.00 a month; an H100 for the default hour reserves 2.49 (plus its CPU and memory).
    budget = httpx.put(f"{env.url}/v1/projects/capped/budget", json={"limitMicros": 1_000_000, "defaultMaxRuntimeSeconds": 3600}, headers=admin)
    assert budget.status_code == 200, budget.text
    client = Client(env.url, project="capped")
    with pytest.raises(fastgpu.BudgetExhausted) as caught:
        client.run(["true"], gpus="H100:1")
    assert caught.value.status == 402 and "budgetExhausted" in caught.value.detail
    # Ten minutes fit: 2.49 / 6 = 0.415.
    job = client.run(["true"], gpus="H100:1", max_runtime=600)
    assert job.wait().state == "succeeded"


def test_clear_errors_for_a_wrong_token_a_missing_model_a_wrong_shape_and_no_server(env, onnx_model, tmp_path):
    def one_clear_exception(error: BaseException) -> None:
        # Raised by the SDK with the server's words, with no httpx exception chained to it.
        assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
        frames = traceback.format_exception(type(error), error, error.__traceback__)
        assert "httpx" not in "".join(frames[-2:])

    with pytest.raises(fastgpu.AuthenticationError) as caught:
        Client(env.url, token="fgpu_wrong").run("true")
    assert caught.value.status == 401 and "token" in caught.value.detail
    one_clear_exception(caught.value)

    client = Client(env.url)
    with pytest.raises(fastgpu.ModelFileNotFound, match="no model file"):
        client.deploy_model(model_file=str(tmp_path / "missing.onnx"), input_shape=(64, 64))

    model = fastgpu.Model(client, "shape-check", (64, 64), None)
    with pytest.raises(fastgpu.InvalidInput, match=r"shape \(32, 32\)"):
        model.predict(np.zeros((32, 32), dtype=np.float32))

    with pytest.raises(fastgpu.NotFound) as missing:
        client.job(999_999)
    assert missing.value.status == 404 and "not found" in missing.value.detail

    port = free_port()
    with pytest.raises(fastgpu.APIConnectionError) as unreachable:
        Client(f"http://127.0.0.1:{port}", max_retries=1).job(1)
    assert f"127.0.0.1:{port}" in str(unreachable.value)
    one_clear_exception(unreachable.value)


def test_an_s3_backend_takes_results_too(env, moto):
    assert httpx.put(f"{moto}/sdk-results").status_code == 200
    created = httpx.put(f"{env.url}/v1/storage/backends/s3test", headers={"Authorization": f"Bearer {env.token}"},
                        json={"endpoint": moto, "region": "us-east-1", "bucket": "sdk-results", "addressing": "path",
                              "accessKeyID": "testing", "secretAccessKey": "testing"})
    assert created.status_code in (200, 201), created.text
    client = Client(env.url)
    array = np.arange(12, dtype=np.int64).reshape(3, 4)
    ref = client.save_result(array, bucket="s3test", prefix="exp/1")
    assert ref.uri.startswith("s3://s3test/") and ref.key.startswith("exp/1/result-") and ref.key.endswith(".npy")
    # In the bucket itself, under the project's prefix, byte for byte.
    listing = httpx.get(f"{moto}/sdk-results?list-type=2").text
    assert f"<Key>default/{ref.key}</Key>" in listing and f"<Size>{ref.size}</Size>" in listing
    assert np.array_equal(np.load(io.BytesIO(client.download(ref.uri))), array)
    assert client.save_result(array, bucket="s3test", prefix="exp/1").uploaded is False
    assert client.save_result({"loss": 0.5}, bucket="s3test", prefix="exp/1", name="metrics.json").size == len(b'{"loss":0.5}')
    with pytest.raises(fastgpu.NotFound):
        client.save_result(b"x", bucket="no-such-backend", prefix="p")


def test_the_async_client_has_the_same_surface(env):
    async def main():
        async with fastgpu.AsyncClient(env.url) as client:
            job = await client.run("echo async", gpus=1)
            await job.wait(timeout=120, check=True)
            lines = [line async for line in job.logs()]
            async with await client.request_gpus(num_gpus=1) as gpus:
                step = await gpus.run("echo $CUDA_VISIBLE_DEVICES")
            ref = await client.save_result(b"bytes", bucket="local", prefix="async")
            return lines, step, ref, gpus

    lines, step, ref, gpus = asyncio.run(main())
    assert lines == ["async\n"]
    assert step.ok and step.stdout.strip() != ""
    assert ref.size == 5 and ref.uri.startswith("s3://local/")
    assert gpus.job.state == "cancelled"


# MARK: - Without a server

def scripted(answers):
    """A client whose transport answers from a list and records every request."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    settings = resolve("http://fastgpu.test", "fgpu_token", env={})
    driver = SyncDriver(settings, max_retries=4, http=httpx.Client(transport=httpx.MockTransport(handler)))
    return driver, seen


def test_retries_keep_one_idempotency_key_and_honour_retry_after():
    job = {"id": 7, "state": "pending", "allocations": []}
    driver, seen = scripted([
        httpx.ConnectError("refused"),
        httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "store unavailable"}),
        httpx.Response(429, headers={"Retry-After": "0"}, json={"detail": "slow down"}),
        httpx.Response(201, json=job),
    ])
    from fastgpu import _ops
    assert driver.run(_ops.submit({"project": "p", "command": ["true"]})) == job
    keys = {request.headers["Idempotency-Key"] for request in seen}
    assert len(seen) == 4 and len(keys) == 1 and next(iter(keys)).startswith("fgpu-py-")
    assert all(json.loads(r.content) == {"project": "p", "command": ["true"]} for r in seen)


def test_several_control_planes_a_failed_one_is_left_for_the_next():
    job = {"id": 7, "state": "pending", "allocations": []}
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "cp1.test":
            raise httpx.ConnectError("refused")
        if request.url.host == "cp2.test":
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "no leader"})
        return httpx.Response(201, json=job)

    settings = resolve("http://cp1.test, http://cp2.test,http://cp3.test/", "fgpu_token", env={})
    assert settings.servers == ("http://cp1.test", "http://cp2.test", "http://cp3.test") and settings.server == "http://cp1.test"
    driver = SyncDriver(settings, max_retries=4, http=httpx.Client(transport=httpx.MockTransport(handler)))
    from fastgpu import _ops
    assert driver.run(_ops.submit({"project": "p", "command": ["true"]})) == job
    assert seen == ["http://cp1.test/v1/jobs", "http://cp2.test/v1/jobs", "http://cp3.test/v1/jobs"]
    # The next call starts where the last one succeeded.
    driver.run(_ops.submit({"project": "p", "command": ["true"]}))
    assert seen[-1] == "http://cp3.test/v1/jobs" and len(seen) == 4
    with pytest.raises(fastgpu.InvalidInput):
        resolve("http://a.test,ftp://b.test", "t", env={})


def test_errors_carry_the_servers_status_code_and_detail():
    problem = {"type": "about:blank", "title": "Conflict", "status": 409, "detail": "job 3 is pending", "requestId": "r1"}
    driver, _ = scripted([httpx.Response(409, json=problem, headers={"Content-Type": "application/problem+json"})])
    with pytest.raises(fastgpu.Conflict) as caught:
        driver.send(Call("POST", "/v1/jobs/3/steps", json={"command": ["x"]}))
    error = caught.value
    assert (error.status, error.code, error.detail, error.request_id) == (409, "conflict", "job 3 is pending", "r1")
    # A 503 that outlasts the retries is CapacityUnavailable; a POST without a key is not re-sent after a timeout.
    driver, seen = scripted([httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "full"})])
    with pytest.raises(fastgpu.CapacityUnavailable):
        driver.send(Call("GET", "/v1/jobs"))
    assert len(seen) == 5
    driver, seen = scripted([httpx.ReadTimeout("slow"), httpx.Response(200, json={})])
    with pytest.raises(fastgpu.APITimeoutError):
        driver.send(Call("POST", "/v1/jobs/3/steps", json={}, retry_safe=False))
    assert len(seen) == 1


def test_settings_come_from_arguments_then_environment_then_the_saved_login(tmp_path):
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"server": "http://saved:8470", "token": "fgpu_saved", "project": "vision"}))
    env = {"FASTGPU_CONFIG": str(saved)}
    assert (resolve(env=env).server, resolve(env=env).token, resolve(env=env).project) == ("http://saved:8470", "fgpu_saved", "vision")
    env.update(FASTGPU_SERVER="http://env:1", FASTGPU_TOKEN="fgpu_env", FASTGPU_PROJECT="speech")
    settings = resolve(env=env)
    assert (settings.server, settings.token, settings.project, settings.gateway) == ("http://env:1", "fgpu_env", "speech", "http://env:8471")
    assert resolve("http://arg:2", "fgpu_arg", "nlp", env=env).token == "fgpu_arg"
    # The saved token goes only to the server it was saved for.
    with pytest.raises(fastgpu.AuthenticationError, match="no API token"):
        resolve("http://elsewhere:8470", env={"FASTGPU_CONFIG": str(saved), "HOME": str(tmp_path)})
    assert "fgpu_arg" not in repr(resolve("http://arg:2", "fgpu_arg", env=env))
    with pytest.raises(fastgpu.AuthenticationError, match="no API token"):
        resolve("http://remote:8470", env={"FASTGPU_CONFIG": str(tmp_path / "none.json"), "HOME": str(tmp_path)})
    with pytest.raises(fastgpu.InvalidInput):
        resolve("ftp://x", "t", env={})


def test_a_learned_estimated_start_says_it_was_learned():
    from fastgpu._types import pending_reason
    job = {"state": "pending", "queue": {"position": 2, "estimatedStart": "2026-12-04T10:00:00Z", "estimatedStartBasis": "learned",
                                         "reason": {"kind": "notNow", "code": "gpus", "message": "8 GPUs", "jobsAhead": 1}}}
    reason = pending_reason(job)
    assert reason.estimated_start_basis == "learned" and reason.jobs_ahead == 1
    assert str(reason) == "notNow/gpus: 8 GPUs (estimated start 2026-12-04T10:00:00Z, learned)"
    given = pending_reason({**job, "queue": {**job["queue"], "estimatedStartBasis": "given"}})
    assert str(given) == "notNow/gpus: 8 GPUs (estimated start 2026-12-04T10:00:00Z)"
