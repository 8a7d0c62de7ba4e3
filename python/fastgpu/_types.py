"""What the SDK hands back besides handles: plain, typed records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class PendingReason:
    """Why a job waits, as the scheduler says it: `kind` is `notNow` (waiting helps) or `never`
    (no node could ever host it: change the request); `code` for programs; `estimated_start`
    (ISO 8601) when the server can tell, and `estimated_start_basis`: `learned` when it used run
    times learned from finished jobs (nobody gave one), `given` when it rests on users' run times."""

    kind: str
    code: str
    message: str
    position: Optional[int] = None
    jobs_ahead: Optional[int] = None
    estimated_start: Optional[str] = None
    estimated_start_basis: Optional[str] = None

    def __str__(self) -> str:
        learned = ", learned" if self.estimated_start_basis == "learned" else ""
        eta = f" (estimated start {self.estimated_start}{learned})" if self.estimated_start else ""
        return f"{self.kind}/{self.code}: {self.message}{eta}"


@dataclass(frozen=True)
class StepResult:
    """A command run in an allocation: its output, exit code and state (`succeeded`, `failed`,
    or `lost` when the allocation ended first)."""

    step: int
    command: Any
    state: str
    exit_code: Optional[int]
    stdout: str
    stderr: str
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"


@dataclass(frozen=True)
class ResultRef:
    """Where a saved result is: its `uri` (s3://BACKEND/PROJECT-KEY), size, sha256 and key."""

    uri: str
    size: int
    sha256: str
    backend: str
    key: str
    content_type: str
    uploaded: bool = field(default=True, compare=False)

    def __str__(self) -> str:
        return self.uri


def pending_reason(job: Dict[str, Any]) -> Optional[PendingReason]:
    queue = job.get("queue") or {}
    reason = queue.get("reason")
    if job.get("state") != "pending" or not reason:
        return None
    return PendingReason(kind=reason.get("kind", ""), code=reason.get("code", ""), message=reason.get("message", ""),
                         position=queue.get("position"), jobs_ahead=reason.get("jobsAhead"), estimated_start=queue.get("estimatedStart"),
                         estimated_start_basis=queue.get("estimatedStartBasis"))


def step_result(data: Dict[str, Any]) -> StepResult:
    return StepResult(step=data["id"], command=data.get("command"), state=data.get("state", ""), exit_code=data.get("exitCode"),
                      stdout=data.get("stdout", ""), stderr=data.get("stderr", ""), truncated=bool(data.get("truncated")))
