"""Where the SDK finds its server, token and project, as the CLI does: the argument, then the
environment (FASTGPU_SERVER, FASTGPU_TOKEN, FASTGPU_PROJECT, FASTGPU_GATEWAY, FASTGPU_CA_FILE),
then the file `fastgpu login` wrote (~/.config/fastgpu/config.json or FASTGPU_CONFIG), then the
defaults of `fastgpu up`: http://127.0.0.1:8470 with the admin token in ~/.fastgpu."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from .errors import AuthenticationError, InvalidInput

LOCAL_SERVER = "http://127.0.0.1:8470"
GATEWAY_PORT = 8471


@dataclass(frozen=True)
class Settings:
    server: str
    token: str
    project: str
    gateway: str
    ca_file: Optional[str]
    #: The gateway was named (argument or FASTGPU_GATEWAY), not derived from the server's URL.
    gateway_given: bool = False
    #: Several control planes of one cluster (`server` is the first): a request that cannot
    #: reach the one in use goes to the next.
    servers: Tuple[str, ...] = ()
    _current: List[int] = field(default_factory=lambda: [0], compare=False)

    def current(self) -> str:
        """The server in use now."""
        return self.servers[self._current[0] % len(self.servers)] if self.servers else self.server

    def move_on(self, failed: str) -> None:
        """After `failed` could not be reached: use the next server (unless another call already moved on)."""
        if len(self.servers) > 1 and self.current() == failed:
            self._current[0] = (self._current[0] + 1) % len(self.servers)

    def __repr__(self) -> str:  # the token is never shown
        return f"Settings(server={self.server!r}, project={self.project!r}, gateway={self.gateway!r}, token=<{len(self.token)} chars>)"


def _config_path(env: Dict[str, str]) -> str:
    if env.get("FASTGPU_CONFIG"):
        return env["FASTGPU_CONFIG"]
    home = env.get("HOME") or os.path.expanduser("~")
    base = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return os.path.join(base, "fastgpu", "config.json")


def _saved_login(env: Dict[str, str]) -> Dict[str, Any]:
    try:
        with open(_config_path(env), "r", encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _local_admin_token(env: Dict[str, str]) -> Optional[str]:
    home = env.get("HOME") or os.path.expanduser("~")
    try:
        with open(os.path.join(home, ".fastgpu", "admin-token"), "r", encoding="utf-8") as f:
            token = f.read().strip()
        return token or None
    except OSError:
        return None


def _check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"the {what} URL must look like http://HOST:PORT, not {url!r}")
    return url.rstrip("/")


def resolve(server: Optional[str] = None, token: Optional[str] = None, project: Optional[str] = None,
            gateway: Optional[str] = None, ca_file: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> Settings:
    env = dict(os.environ) if env is None else env
    saved = _saved_login(env)
    given_servers = str(server or env.get("FASTGPU_SERVER") or saved.get("server") or LOCAL_SERVER)
    servers = tuple(_check_url(part.strip(), "server") for part in given_servers.split(",") if part.strip())
    if not servers or len(servers) > 16:
        raise InvalidInput(f"give one server URL, or up to 16 comma-separated, not {given_servers!r}")
    server = servers[0]
    host = urlsplit(server).hostname or ""
    # The saved token goes only to the server it was saved for.
    saved_server = str(saved.get("server") or LOCAL_SERVER).rstrip("/")
    token = token or env.get("FASTGPU_TOKEN") or (saved.get("token") if saved_server == ",".join(servers) else None)
    if not token and host in ("127.0.0.1", "localhost", "::1"):
        token = _local_admin_token(env)
    if not token:
        raise AuthenticationError(401, "no_token", f"no API token for {server}: pass token=..., set FASTGPU_TOKEN, "
                                  f"or run `fastgpu login --server {server} --token TOKEN`")
    project = project or env.get("FASTGPU_PROJECT") or saved.get("project") or "default"
    if not gateway:
        gateway = env.get("FASTGPU_GATEWAY")
    given = bool(gateway)
    if not gateway:
        parts = urlsplit(server)
        netloc = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else (parts.hostname or "")
        gateway = urlunsplit((parts.scheme, f"{netloc}:{GATEWAY_PORT}", "", "", ""))
    return Settings(server=server, token=token, project=project, gateway=_check_url(gateway, "gateway"),
                    ca_file=ca_file or env.get("FASTGPU_CA_FILE") or saved.get("caFile"), gateway_given=given, servers=servers)
