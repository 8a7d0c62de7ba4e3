"""The exceptions of the SDK: one clear exception per failure, with the server's words.

    FastGPUError
    ├── APIConnectionError          the server could not be reached
    │   └── APITimeoutError         it did not answer in time
    ├── APIStatusError              it answered with an error (status, code, detail)
    │   ├── InvalidRequest          400, 413, 422: the request is wrong; change it
    │   ├── AuthenticationError     401: no token, or a wrong, expired or revoked one
    │   ├── BudgetExhausted         402: the project's budget cannot hold the job's reservation
    │   ├── PermissionDenied        403
    │   ├── NotFound                404
    │   ├── Conflict                409: the state forbids it now (a job not running, ...)
    │   ├── RateLimited             429 (retried first, honouring Retry-After)
    │   └── CapacityUnavailable     503, or GPUs that no node has (retried first where it can pass)
    ├── InvalidInput                wrong input found before anything was sent (a shape, a size)
    ├── JobFailed / StepFailed      a command ended with a non-zero exit code
    └── WaitTimeout                 a wait of the SDK's own passed its timeout
"""

from __future__ import annotations

from typing import Any, Optional


class FastGPUError(Exception):
    """Every exception the SDK raises."""


class APIConnectionError(FastGPUError):
    """The server could not be reached (refused, reset, name not resolved, TLS failed)."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class APITimeoutError(APIConnectionError):
    """The server did not answer within the timeout."""


class APIStatusError(FastGPUError):
    """The server answered with an error: `status`, a short `code` and its `detail`."""

    def __init__(self, status: int, code: str, detail: str, *, request_id: Optional[str] = None,
                 field: Optional[str] = None, body: Any = None) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.request_id = request_id
        self.field = field
        self.body = body
        where = f" ({field})" if field else ""
        super().__init__(f"{status} {code}: {detail}{where}")


class InvalidRequest(APIStatusError):
    """400, 413 or 422: the request is wrong as written."""


class AuthenticationError(APIStatusError):
    """401: no token, or one the server does not accept (wrong, expired, revoked)."""


class BudgetExhausted(APIStatusError):
    """402: the project's monthly budget cannot hold what the job reserves (price × resources ×
    max runtime). Ask for less, a shorter `max_runtime`, or a larger budget (`fastgpu budget set`)."""


class PermissionDenied(APIStatusError):
    """403: the token's subject may not do this."""


class NotFound(APIStatusError):
    """404: no such job, service, object, ... (or not one the caller may see)."""


class Conflict(APIStatusError):
    """409: the current state forbids it (a job that is not running takes no step, ...)."""


class RateLimited(APIStatusError):
    """429: too many requests; `retry_after` seconds is the server's advice."""

    def __init__(self, *args: Any, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class CapacityUnavailable(APIStatusError):
    """503 (no capacity now: a full gateway queue, a store that failed), or GPUs that no node
    of the cluster could ever host (`code == "never"`)."""

    def __init__(self, *args: Any, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class InvalidInput(FastGPUError, ValueError):
    """Input the SDK refuses before sending anything (a wrong array shape, an unknown dtype)."""


class ModelFileNotFound(FastGPUError, FileNotFoundError):
    """The model file (or module) to deploy is not there."""


class JobFailed(FastGPUError):
    """A job ended failed or cancelled when success was awaited."""

    def __init__(self, message: str, *, job: Any = None) -> None:
        super().__init__(message)
        self.job = job


class StepFailed(FastGPUError):
    """A command run in an allocation exited with a non-zero code (or was lost with it)."""

    def __init__(self, message: str, *, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class WaitTimeout(FastGPUError, TimeoutError):
    """A wait of the SDK's own (a job to finish, GPUs to be granted) passed its timeout."""


_BY_STATUS = {400: InvalidRequest, 413: InvalidRequest, 422: InvalidRequest, 401: AuthenticationError, 402: BudgetExhausted, 403: PermissionDenied,
              404: NotFound, 409: Conflict, 429: RateLimited, 503: CapacityUnavailable}


def status_error(status: int, code: str, detail: str, **kwargs: Any) -> APIStatusError:
    """The exception for an error answer."""
    cls = _BY_STATUS.get(status, APIStatusError)
    retry_after = kwargs.pop("retry_after", None)
    if cls in (RateLimited, CapacityUnavailable):
        return cls(status, code, detail, retry_after=retry_after, **kwargs)
    return cls(status, code, detail, **kwargs)
