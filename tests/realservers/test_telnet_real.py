"""``tcpcli starttls --protocol telnet`` against a real telnet START_TLS server: C-Kermit's
IKSD (Debian's ``ckermit``, built with OpenSSL), started per connection as inetd does.

Of Debian's telnet servers only IKSD speaks START_TLS (option 46). ``telnetd-ssl`` answers
WILL START_TLS with DONT and offers AUTHENTICATION type SSL (7) instead, or TLS from the
first byte (``-z ssl``); ``inetutils-telnetd`` (and ``telnetd``, now a transitional package
for it) answers DONT and has no TLS at all.

Two listeners run the same binary. ``iksd`` is IKSD as installed: it asks for START_TLS and
six other options at once, and ``openssl s_client -starttls telnet`` gives up on it (it
wants the server's FOLLOWS alone in one read). ``start-tls-only`` refuses those options in
IKSD's configuration file, the only one it reads before negotiating (a fixed path, so it is
bound over /etc/kermit/iksd.conf in a private mount namespace: root only), so that openssl
can run the same handshake to compare with.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.realservers.conftest import (
    STARTED,
    ServerFiles,
    as_user,
    package_version,
    require,
    require_binary,
    service_user,
)
from tests.realservers.test_starttls_real import (
    assert_verified_by_the_session_ca,
    openssl_says,
    starttls_json,
)

IKSD_CONF = Path("/etc/kermit/iksd.conf")
#: Everything IKSD would ask for besides START_TLS, refused (it then asks for nothing else).
START_TLS_ONLY_CONF = """\
set telopt /server authentication refused
set telopt /server naws refused
set telopt /server new-environment refused
set telopt /server echo refused
set telopt /server suppress-go-ahead refused refused
"""


class Inetd:
    """What inetd does for IKSD: each connection gets a fresh process of ``argv`` with the
    socket as its stdin and stdout."""

    def __init__(self, services: dict[str, list[str]], *, cwd: Path, env: dict[str, str],
                 user: str | None, log: IO[bytes]) -> None:
        self._cwd, self._env, self._user, self._log = cwd, env, user, log
        self._children: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()
        self._listeners: dict[str, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        for name, argv in services.items():
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            listener.settimeout(0.1)  # so that stop() is noticed
            self._listeners[name] = listener
            self._threads.append(threading.Thread(target=self._serve, args=(listener, argv),
                                                  daemon=True))
        for thread in self._threads:
            thread.start()

    @property
    def ports(self) -> dict[str, int]:
        return {name: int(sock.getsockname()[1]) for name, sock in self._listeners.items()}

    def _serve(self, listener: socket.socket, argv: list[str]) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:  # the child has its own copy
                self._children.append(subprocess.Popen(
                    argv, stdin=connection, stdout=connection, stderr=self._log,
                    cwd=self._cwd, env=self._env, start_new_session=True,
                    **as_user(self._user)))

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join()
        for listener in self._listeners.values():
            listener.close()
        for child in self._children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)


@pytest.fixture(scope="session")
def iksd_ports(server_files: ServerFiles) -> Iterator[dict[str, int]]:
    iksd = require_binary("iksd")
    user = service_user("nobody")
    cwd = server_files.workdir("iksd", user)
    # With no RSA-CERT-FILE set, IKSD serves $SSL_CERT_DIR/telnetd-rsa{,-key}.pem.
    (cwd / "telnetd-rsa.pem").symlink_to("cert.pem")
    (cwd / "telnetd-rsa-key.pem").symlink_to("key.pem")
    # --database:off: no session database in /var/log.
    command = [iksd, "-A", "--database:off"]
    services = {"iksd": command}
    if os.geteuid() == 0 and IKSD_CONF.exists():
        (cwd / "iksd.conf").write_text(START_TLS_ONLY_CONF)
        account = pwd.getpwnam(user) if user else None
        drop = (["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                 "--clear-groups"] if account else [])
        # The mount is done as root; IKSD then runs as nobody, as on the other listener.
        services["start-tls-only"] = [
            "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh",
            str(cwd / "iksd.conf"), str(IKSD_CONF), *drop, *command]
        user = None  # the unshare above needs root; the one below drops it itself
        services["iksd"] = [*drop, *command]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
           "SSL_CERT_DIR": str(cwd)}
    with (cwd / "server.log").open("ab") as log:
        inetd = Inetd(services, cwd=cwd, env=env, user=user, log=log)
        STARTED["iksd"] = package_version("ckermit")
        try:
            yield inetd.ports
        finally:
            inetd.stop()


#: What IKSD as installed asks for: START_TLS first, then six more at once.
IKSD_REQUESTS = ["DO START_TLS", "DO AUTHENTICATION", "DO NAWS", "WILL SGA", "DO SGA",
                 "WILL ECHO", "DO NEW-ENVIRON"]


def check_upgrade(port: int, ca_file: str, server_files: ServerFiles,
                  requests: list[str]) -> dict[str, str]:
    """Run ``tcpcli starttls --protocol telnet``, check what it saw; its TLS version and
    cipher."""
    starttls, tls = starttls_json(port, ca_file, "--protocol", "telnet")
    assert starttls["protocol"] == "telnet"
    assert starttls["starttls_offered"] is True
    assert starttls["capabilities_before"] == requests
    assert starttls["upgrade_reply"] == "IAC SB START_TLS ... IAC SE"
    assert_verified_by_the_session_ca(tls, server_files)
    return {"version": tls["version"], "cipher": tls["cipher"]}


def test_upgrades_through_iksds_own_negotiation(iksd_ports: dict[str, int],
                                                server_files: ServerFiles,
                                                ca_file: str) -> None:
    # IKSD's other requests (DO AUTHENTICATION, DO NAWS, ...) arrive after DO START_TLS:
    # our FOLLOWS is already sent, and the draft lets us answer nothing more before TLS.
    check_upgrade(iksd_ports["iksd"], ca_file, server_files, IKSD_REQUESTS)


def test_upgrades_verifies_and_agrees_with_openssl(iksd_ports: dict[str, int],
                                                    server_files: ServerFiles,
                                                    ca_file: str) -> None:
    require("start-tls-only" in iksd_ports,
            "IKSD's START_TLS-only configuration needs root (a private mount namespace)")
    port = iksd_ports["start-tls-only"]
    ours = check_upgrade(port, ca_file, server_files, ["DO START_TLS"])
    said = openssl_says("telnet", port, ca_file)
    assert (ours["version"], ours["cipher"]) == (said["Protocol version"], said["Ciphersuite"])


def test_probe_finds_telnets_start_tls(iksd_ports: dict[str, int], ca_file: str) -> None:
    """probe --tls-detect on IKSD's free port: telnet named by its option negotiation, and
    START_TLS found and completed (verified against the session's CA)."""
    import json

    from tests.support.cli import run_cli

    port = iksd_ports["iksd"]
    proc = run_cli("probe", "127.0.0.1", "-p", str(port), "--allow", "127.0.0.1",
                   "--banner", "--tls-detect", "--ca-file", ca_file, "--sni", "localhost",
                   "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    row = next(event for event in map(json.loads, proc.stdout.splitlines())
               if event["event"] == "probe_result")
    assert row["service"]["name"] == "telnet", row
    tls = row["tls"]
    assert (tls["detected"], tls["mode"], tls["protocol"]) == (True, "starttls", "telnet"), tls
    assert tls["verdict"] == "verified", tls
