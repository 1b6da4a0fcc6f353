"""workerd, the open-source Workers runtime: find the pinned binary, start it, run scenarios.

The binary comes from the npm package pinned in ``package.json`` (installed by
``install-workerd.sh`` into ``node_modules/``). One process serves the whole session. It
listens on a socket the harness bound on 127.0.0.1 (``--socket-fd``: no port race), and its
``connect()`` goes through a network service that allows loopback and trusts the session's
trustme CA (``workerd-config.capnp.in``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path
from string import Template
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
WORKER_SCRIPT = HERE / "worker.mjs"
CONFIG_TEMPLATE = HERE / "workerd-config.capnp.in"
BINARY = HERE / "node_modules" / ".bin" / "workerd"
INSTALLER = HERE / "install-workerd.sh"
#: The workerd release that sets the date it implements; Workers' compatibility date.
COMPATIBILITY_DATE = "2026-11-17"
#: Generous: workerd loads in well under a second here.
START_SECONDS = 30.0
REQUEST_SECONDS = 30.0


class WorkerdUnavailable(RuntimeError):
    """workerd is not installed or could not start. The suite fails on it, never skips."""


def pinned_version() -> str:
    """The workerd version ``package.json`` pins: the one place that names it."""
    package = json.loads((HERE / "package.json").read_text())
    return str(package["dependencies"]["workerd"])


def installed_version() -> str | None:
    manifest = HERE / "node_modules" / "workerd" / "package.json"
    if not manifest.exists():
        return None
    return str(json.loads(manifest.read_text())["version"])


def check_installed() -> Path:
    """The workerd binary, or a clear reason why the suite cannot run.

    On a fresh machine the README's test command alone must work, so a missing or
    mismatched workerd is installed here first (npm, from the pinned lock file).
    """
    if installed_version() != pinned_version() or not BINARY.exists():
        subprocess.run(["bash", str(INSTALLER)], check=False, stdout=subprocess.DEVNULL)
    version = installed_version()
    if version is None or not BINARY.exists():
        hint = (
            f"run `bash {INSTALLER.relative_to(HERE.parent.parent)}`"
            if shutil.which("npm")
            else "install Node.js and npm (e.g. `apt-get install nodejs npm`), then run "
            f"`bash {INSTALLER.relative_to(HERE.parent.parent)}`"
        )
        raise WorkerdUnavailable(f"workerd {pinned_version()} is not installed: {hint}")
    if version != pinned_version():
        raise WorkerdUnavailable(
            f"node_modules holds workerd {version}, but package.json pins {pinned_version()}: "
            f"run `bash {INSTALLER.relative_to(HERE.parent.parent)}`"
        )
    return BINARY


class Workerd:
    """One workerd process serving the scenario Worker on loopback."""

    def __init__(self, workdir: Path, ca_pem: bytes) -> None:
        self.workdir = workdir
        self.ca_pem = ca_pem
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "workerd.log"

    def start(self) -> None:
        """Bind, write the config and start workerd (in the calling thread's namespace)."""
        binary = check_installed()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        (self.workdir / "worker.mjs").write_bytes(WORKER_SCRIPT.read_bytes())
        (self.workdir / "ca.pem").write_bytes(self.ca_pem)
        config = Template(CONFIG_TEMPLATE.read_text()).substitute(
            port=self.port, compatibility_date=COMPATIBILITY_DATE
        )
        config_path = self.workdir / "config.capnp"
        config_path.write_text(config)
        fd = listener.fileno()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(binary), "serve", str(config_path), f"--socket-fd=http={fd}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(fd,), cwd=self.workdir,
            )
        listener.close()  # the child holds its own copy

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _exited(self) -> str | None:
        if self.process is None or self.process.poll() is None:
            return None
        return f"workerd exited with status {self.process.returncode}:\n{self.log_tail()}"

    async def wait_ready(self) -> None:
        with anyio.move_on_after(START_SECONDS):
            while True:
                if (reason := self._exited()) is not None:
                    raise WorkerdUnavailable(reason)
                try:
                    status, body = await self._request("GET", b"")
                except OSError:
                    await anyio.sleep(0.05)
                    continue
                if status == 200 and body == b"ready\n":
                    return
                raise WorkerdUnavailable(f"workerd answered {status}: {body[:200]!r}")
        raise WorkerdUnavailable(
            f"workerd did not serve within {START_SECONDS:g} s:\n{self.log_tail()}"
        )

    async def run(self, scenario: dict[str, Any]) -> dict[str, Any]:
        """POST one scenario to the Worker; return its outcome record."""
        with anyio.fail_after(REQUEST_SECONDS):
            status, body = await self._request("POST", json.dumps(scenario).encode())
        if status != 200:
            reason = self._exited() or self.log_tail()
            raise WorkerdUnavailable(f"the Worker answered {status}: {body[:500]!r}\n{reason}")
        outcome: dict[str, Any] = json.loads(body)
        return outcome

    async def _request(self, method: str, body: bytes) -> tuple[int, bytes]:
        """A minimal HTTP/1.1 exchange (no proxies, no pooling): status and body."""
        head = (
            f"{method} / HTTP/1.1\r\nHost: oracle\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        async with await anyio.connect_tcp("127.0.0.1", self.port) as stream:
            await stream.send(head + body)
            response = bytearray()
            while True:
                try:
                    response += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
        header, _, payload = bytes(response).partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if any(line.lower() == "transfer-encoding: chunked" for line in lines[1:]):
            payload = _dechunk(payload)
        return status, payload

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return bytes(out)

