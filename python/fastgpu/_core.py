"""The SDK's operations are written once, as generators that yield what they need done (an
HTTP call, a pause, an item for the caller) and receive the result; `Client` drives them with
httpx's blocking client and `AsyncClient` with its asyncio one. Retries live in the drivers:
connection errors, 429 and 503 are tried again (honouring Retry-After) with the call's one
idempotency key, so a retried submission is still one job."""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Dict, Generator, Iterator, Optional, TypeVar, Union

import httpx

from . import errors
from ._config import Settings

T = TypeVar("T")

USER_AGENT = "fastgpu-python/0.1.0"


@dataclass
class Call:
    """One HTTP request. `path` is relative to the server unless `url` is given (a presigned
    URL, the gateway), which is sent without the API token."""

    method: str
    path: str = ""
    url: Optional[str] = None
    params: Optional[Dict[str, Any]] = None
    json: Any = None
    content: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    #: Statuses answered to the operation instead of raised.
    accept: tuple = ()
    #: Safe to send again after a read timeout or a dropped connection (GET, PUT, DELETE, or a
    #: POST that carries an idempotency key).
    retry_safe: Optional[bool] = None
    #: 503 is an answer to wait on, not an error (the gateway holding a request for a service at zero).
    retry_503: bool = True
    auth: bool = True


@dataclass
class Sleep:
    seconds: float


@dataclass
class Emit:
    value: Any


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    content: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.content) if self.content else None
        except ValueError:
            text = self.content[:200].decode("utf-8", "replace")
            raise errors.APIStatusError(self.status, "not_json", f"the answer is not JSON: {text!r}") from None


Op = Generator[Union[Call, Sleep, Emit], Any, T]


def idempotency_key() -> str:
    return "fgpu-py-" + uuid.uuid4().hex


def _retry_after(headers: httpx.Headers) -> Optional[float]:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), 60.0))
    except ValueError:
        return None


def _error_from(reply: Reply, url: str) -> errors.APIStatusError:
    detail, code, request_id, fld, body = "", "", None, None, None
    try:
        body = reply.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = str(body.get("detail") or body.get("title") or "")
        kind = str(body.get("type") or "")
        code = kind.rsplit("/", 1)[-1] if kind and kind != "about:blank" else ""
        if not code:
            code = str(body.get("title") or "").lower().replace(" ", "_")
        request_id = body.get("requestId")
        fld = body.get("field")
    if not detail:
        text = reply.content.decode("utf-8", "replace").strip()
        detail = text[:500] if text else httpx.codes.get_reason_phrase(reply.status) or "error"
    if not code:
        code = (httpx.codes.get_reason_phrase(reply.status) or "error").lower().replace(" ", "_")
    return errors.status_error(reply.status, code, detail, request_id=request_id, field=fld, body=body,
                               retry_after=_retry_after(reply.headers))


class _Policy:
    """How many times, and how long between: exponential from 0.25 s with jitter, at most 8 s,
    or the server's Retry-After."""

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries

    def delay(self, attempt: int, retry_after: Optional[float]) -> float:
        if retry_after is not None:
            return retry_after
        return min(8.0, 0.25 * (2 ** attempt)) * (0.5 + random.random() / 2)


def _request_args(settings: Settings, call: Call) -> Dict[str, Any]:
    headers = {"User-Agent": USER_AGENT, **call.headers}
    if call.auth and call.url is None:
        headers["Authorization"] = f"Bearer {settings.token}"
    url = call.url if call.url is not None else settings.current() + call.path
    args: Dict[str, Any] = {"method": call.method, "url": url, "headers": headers, "timeout": call.timeout}
    if call.params:
        args["params"] = {k: v for k, v in call.params.items() if v is not None}
    if call.json is not None:
        args["json"] = call.json
    elif call.content is not None:
        args["content"] = call.content
    return args


def _retry_safe(call: Call) -> bool:
    if call.retry_safe is not None:
        return call.retry_safe
    return call.method in ("GET", "HEAD", "PUT", "DELETE") or "Idempotency-Key" in call.headers


def _transport_error(exc: Exception, url: str) -> errors.APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return errors.APITimeoutError(f"{url} did not answer in time ({type(exc).__name__})", url=url)
    reason = str(exc) or type(exc).__name__
    return errors.APIConnectionError(f"cannot reach {url}: {reason}", url=url)


def _move_on(settings: Settings, call: Call, reply: Optional[Reply], failure: Optional[Exception]) -> None:
    """Before a retry: a server that could not be reached, or that answered 503 (a control
    plane between leaders), is left for the next one of the list."""
    if call.url is None and (failure is not None or (reply is not None and reply.status == 503)):
        settings.move_on(settings.current())


def _retry_delay(call: Call, attempt: int, policy: _Policy, url: str, reply: Optional[Reply], failure: Optional[Exception]) -> Optional[float]:
    """After one try: None when `reply` is the answer, the pause before the next try, or the
    exception to raise (outside any `except`, so nothing of httpx is chained to it)."""
    retries_left = attempt < policy.max_retries
    if failure is not None:
        connect = isinstance(failure, (httpx.ConnectError, httpx.ConnectTimeout))
        transport = isinstance(failure, httpx.TransportError)
        if retries_left and transport and (connect or _retry_safe(call)):
            return policy.delay(attempt, None)
        raise _transport_error(failure, url)
    assert reply is not None
    if reply.status in call.accept or reply.status < 400:
        return None
    if retries_left and (reply.status == 429 or (reply.status == 503 and call.retry_503)):
        return policy.delay(attempt, _retry_after(reply.headers))
    raise _error_from(reply, url)


class SyncDriver:
    def __init__(self, settings: Settings, max_retries: int, http: Optional[httpx.Client] = None) -> None:
        self.settings = settings
        self.policy = _Policy(max_retries)
        verify: Any = settings.ca_file or True
        self.http = http or httpx.Client(verify=verify, follow_redirects=False)

    def send(self, call: Call) -> Reply:
        attempt = 0
        while True:
            args = _request_args(self.settings, call)
            reply, failure = None, None
            try:
                r = self.http.request(**args)
                reply = Reply(r.status_code, r.headers, r.content)
            except (httpx.RequestError, httpx.InvalidURL) as exc:
                failure = exc
            delay = _retry_delay(call, attempt, self.policy, args["url"], reply, failure)
            if delay is None:
                assert reply is not None
                return reply
            _move_on(self.settings, call, reply, failure)
            time.sleep(delay)
            attempt += 1

    def run(self, op: "Op[T]") -> T:
        value: Any = None
        try:
            while True:
                step = op.send(value)
                if isinstance(step, Call):
                    value = self.send(step)
                elif isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    value = None
                else:
                    raise TypeError("an operation that emits items is iterated, not run")
        except StopIteration as done:
            return done.value

    def iterate(self, op: "Op[Any]") -> Iterator[Any]:
        value: Any = None
        try:
            while True:
                step = op.send(value)
                value = None
                if isinstance(step, Call):
                    value = self.send(step)
                elif isinstance(step, Sleep):
                    time.sleep(step.seconds)
                else:
                    yield step.value
        except StopIteration:
            return

    def close(self) -> None:
        self.http.close()


class AsyncDriver:
    def __init__(self, settings: Settings, max_retries: int, http: Optional[httpx.AsyncClient] = None) -> None:
        self.settings = settings
        self.policy = _Policy(max_retries)
        verify: Any = settings.ca_file or True
        self.http = http or httpx.AsyncClient(verify=verify, follow_redirects=False)

    async def send(self, call: Call) -> Reply:
        import asyncio

        attempt = 0
        while True:
            args = _request_args(self.settings, call)
            reply, failure = None, None
            try:
                r = await self.http.request(**args)
                reply = Reply(r.status_code, r.headers, r.content)
            except (httpx.RequestError, httpx.InvalidURL) as exc:
                failure = exc
            delay = _retry_delay(call, attempt, self.policy, args["url"], reply, failure)
            if delay is None:
                assert reply is not None
                return reply
            _move_on(self.settings, call, reply, failure)
            await asyncio.sleep(delay)
            attempt += 1

    async def run(self, op: "Op[T]") -> T:
        import asyncio

        value: Any = None
        try:
            while True:
                step = op.send(value)
                if isinstance(step, Call):
                    value = await self.send(step)
                elif isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    value = None
                else:
                    raise TypeError("an operation that emits items is iterated, not run")
        except StopIteration as done:
            return done.value

    async def iterate(self, op: "Op[Any]") -> AsyncIterator[Any]:
        import asyncio

        value: Any = None
        while True:
            try:
                step = op.send(value)
            except StopIteration:
                return
            value = None
            if isinstance(step, Call):
                value = await self.send(step)
            elif isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
            else:
                yield step.value

    async def close(self) -> None:
        await self.http.aclose()


def monotonic() -> float:
    return time.monotonic()


Callback = Callable[[str], None]
