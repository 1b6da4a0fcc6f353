"""Real STARTTLS servers from Debian's packages, each started once per session.

Every server gets a free loopback port, the session's trustme certificate (valid for
localhost and 127.0.0.1) and a throwaway configuration in one scratch directory. The
servers that refuse to run as root (PostgreSQL, Prosody) run as their package's user,
MariaDB drops to ``mysql`` itself, and the masters of Postfix, Dovecot and vsftpd drop
privileges for their children as they do in production.

A server that is not installed skips its tests locally, but fails them under CI
(``CI=true``): a green CI run has talked to every server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import platform
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import trustme

IN_CI = os.environ.get("CI") == "true"
#: Where Debian puts daemons, whether or not they are on this user's PATH.
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
#: How long a server may take to start (MariaDB's first start is the slowest).
START_DEADLINE = 30.0
#: Which server ran in this session, and which version: shown at the end of the run.
STARTED: dict[str, str] = {}


def require(condition: bool, why: str) -> None:
    """Skip the test when ``condition`` is false; under CI, fail it instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{why}; .ci/run installs it, and a real-server test may not skip "
                    "under CI=true", pytrace=False)
    pytest.skip(why)


def require_binary(name: str, *, pattern: str | None = None) -> str:
    """The path of an installed server binary (``pattern``: a glob, for versioned paths)."""
    found = sorted(glob.glob(pattern)) if pattern else []
    path = found[-1] if found else shutil.which(name, path=SBIN_PATH)
    require(path is not None, f"{name} is not installed")
    assert path is not None
    return path


def require_root(name: str) -> None:
    # Postfix's, Dovecot's and vsftpd's masters start as root and drop privileges;
    # CI runs as root, a developer's laptop may not.
    require(os.geteuid() == 0, f"{name} needs root to start its login processes")


def package_version(package: str) -> str:
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                                capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    return result.stdout.strip() or "unknown"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pick(ports: Mapping[str, int] | None, listener: str) -> int:
    """The port asked for ``listener`` (a benchmark puts servers on their standard ports,
    in a namespace of its own), else a free one."""
    return (ports or {}).get(listener) or free_port()


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class ServerFiles:
    """The session's scratch directory and the server certificate in it."""

    root: Path
    ca: Path
    cert: Path  # the leaf and any intermediates, PEM
    key: Path

    def workdir(self, name: str, user: str | None = None) -> Path:
        """A fresh directory for one server, owned by ``user``, with its own key copy
        (servers insist on owning a key nobody else can read)."""
        path = self.root / name
        path.mkdir()
        shutil.copy(self.cert, path / "cert.pem")
        shutil.copy(self.key, path / "key.pem")
        (path / "key.pem").chmod(0o600)
        if user is not None:
            account = pwd.getpwnam(user)
            for item in (path, path / "cert.pem", path / "key.pem"):
                os.chown(item, account.pw_uid, account.pw_gid)
        return path


def as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that run a process as ``user`` (when we are root)."""
    if user is None:
        return {}
    account = pwd.getpwnam(user)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def service_user(user: str) -> str | None:
    """``user`` when running as root (the server refuses root); else ourselves."""
    return user if os.geteuid() == 0 else None


@dataclass
class RealServer:
    name: str
    version: str
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    #: Listener -> (version, cipher) where the configuration pins them, so that comparing
    #: with openssl checks more than both sides' defaults.
    pinned_tls: dict[str, tuple[str, str]] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    #: For a server whose master leaves our process group (Postfix's calls setsid).
    stop_argv: list[str] | None = None

    def listener(self, name: str | None = None) -> str:
        """``name``, or the name of the server's only listener."""
        return name or next(iter(self.ports))

    def port(self, listener: str | None = None) -> int:
        return self.ports[self.listener(listener)]

    def log_tail(self) -> str:
        if self.log is None or not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        if self.stop_argv is not None:
            subprocess.run(self.stop_argv, capture_output=True, timeout=30, check=False)
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, self.stop_signal)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def run_setup(argv: list[str], *, user: str | None = None, cwd: Path) -> None:
    """A one-off setup step (initdb, mariadb-install-db); its output only on failure."""
    result = subprocess.run(argv, capture_output=True, timeout=120, cwd=cwd, **as_user(user))
    if result.returncode != 0:
        pytest.fail(f"{argv[0]} failed ({result.returncode}):\n"
                    f"{result.stdout.decode(errors='replace')}"
                    f"{result.stderr.decode(errors='replace')}", pytrace=False)


def launch(server: RealServer, argv: list[str], *, cwd: Path, user: str | None = None,
           ready_marker: str | None = None) -> RealServer:
    """Start ``argv`` in its own process group, logging to ``cwd/server.log``; return once
    every port accepts connections (and ``ready_marker`` is in the log, when given)."""
    server.log = cwd / "server.log"
    with server.log.open("ab") as log:  # appending: some servers write their log here too
        server.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
            start_new_session=True, **as_user(user))
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"{server.name} exited with {server.process.returncode} while "
                        f"starting:\n{server.log_tail()}", pytrace=False)
        marked = ready_marker is None or ready_marker in server.log.read_text(errors="replace")
        if marked and all(accepts(port) for port in server.ports.values()):
            STARTED[server.name] = server.version
            return server
        time.sleep(0.05)
    server.stop()
    pytest.fail(f"{server.name} did not start within {START_DEADLINE:g} s:\n"
                f"{server.log_tail()}", pytrace=False)


@contextlib.contextmanager
def running(server: RealServer) -> Iterator[RealServer]:
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if STARTED:
        versions = ", ".join(f"{name} {version}" for name, version in sorted(STARTED.items()))
        terminalreporter.write_line(f"real servers: {versions}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def server_files(tls_ca: trustme.CA) -> Iterator[ServerFiles]:
    with make_server_files(tls_ca) as files:
        yield files


@contextlib.contextmanager
def make_server_files(tls_ca: trustme.CA) -> Iterator[ServerFiles]:
    """A scratch directory with a certificate for localhost and 127.0.0.1 from ``tls_ca``."""
    # Not under tmp_path: pytest keeps that private to us (0700), and the servers' own
    # users must reach their files.
    root = Path(tempfile.mkdtemp(prefix="tcpcli-realservers-"))
    root.chmod(0o755)
    leaf = tls_ca.issue_cert("localhost", "127.0.0.1")
    files = ServerFiles(root, root / "ca.pem", root / "cert.pem", root / "key.pem")
    tls_ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key))
    try:
        yield files
    finally:
        shutil.rmtree(root, ignore_errors=True)


#: The superuser's password of the PostgreSQL that authenticates with SCRAM-SHA-256.
POSTGRES_PASSWORD = "correct horse battery staple"


@contextlib.contextmanager
def start_postgres(server_files: ServerFiles, ports: Mapping[str, int] | None = None, *,
                   password: str | None = None) -> Iterator[RealServer]:
    """PostgreSQL on loopback: trusting every connection, or, with ``password``, asking
    TCP clients for the superuser's password (SCRAM-SHA-256)."""
    postgres = require_binary("postgres", pattern="/usr/lib/postgresql/*/bin/postgres")
    bindir = Path(postgres).parent
    user = service_user("postgres")
    cwd = server_files.workdir("postgres" if password is None else "postgres-scram", user)
    auth = ["-A", "trust"]
    if password is not None:
        secret = cwd / "password"
        secret.write_text(password + "\n", encoding="utf-8")
        if user is not None:
            account = pwd.getpwnam(user)
            os.chown(secret, account.pw_uid, account.pw_gid)
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile", str(secret)]
    run_setup([str(bindir / "initdb"), "-D", str(cwd / "data"), *auth, "-U", "postgres",
               "--no-sync", "--no-instructions"], user=user, cwd=cwd)
    version, cipher = "TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"
    server = RealServer("postgres", package_version(f"postgresql-{bindir.parent.name}"),
                        {"postgres": pick(ports, "postgres")},
                        pinned_tls={"postgres": (version, cipher)},
                        stop_signal=signal.SIGINT)  # a fast shutdown
    launch(server, [postgres, "-D", str(cwd / "data"), "-k", "", "-h", "127.0.0.1",
                    "-p", str(server.port()), "-c", "fsync=off", "-c", "ssl=on",
                    "-c", f"ssl_cert_file={cwd / 'cert.pem'}",
                    "-c", f"ssl_key_file={cwd / 'key.pem'}",
                    "-c", f"ssl_max_protocol_version={version}", "-c", f"ssl_ciphers={cipher}"],
           cwd=cwd, user=user, ready_marker="ready to accept connections")
    with running(server):
        yield server


@pytest.fixture(scope="session")
def postgres_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_postgres(server_files) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_scram_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_postgres(server_files, password=POSTGRES_PASSWORD) as server:
        yield server


DOVECOT_CONF = """\
base_dir = {cwd}/run
state_dir = {cwd}/state
log_path = {cwd}/server.log
instance_name = tcpcli-{port_imap}
protocols = imap pop3 lmtp sieve
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cwd}/cert.pem
ssl_key = <{cwd}/key.pem
ssl_cipher_suites = {tls_suite}
mail_location = maildir:{cwd}/mail/%u
passdb {{
  driver = static
  args = password=unused
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={cwd}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port_imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {port_pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    port = {port_sieve}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port_lmtp}
  }}
}}
"""


@contextlib.contextmanager
def start_dovecot(server_files: ServerFiles,
                  ports: Mapping[str, int] | None = None) -> Iterator[RealServer]:
    dovecot = require_binary("dovecot")
    for part in ("imap-login", "pop3-login", "managesieve-login", "lmtp"):
        require(Path("/usr/lib/dovecot", part).exists(), f"dovecot's {part} is not installed")
    require_root("dovecot")
    cwd = server_files.workdir("dovecot")
    suite = "TLS_CHACHA20_POLY1305_SHA256"
    server = RealServer("dovecot", package_version("dovecot-core"),
                        {name: pick(ports, name) for name in ("imap", "pop3", "sieve", "lmtp")},
                        # Dovecot 2.3's LMTP ignores ssl_cipher_suites; its logins obey it.
                        pinned_tls={name: ("TLSv1.3", suite) for name in ("imap", "pop3",
                                                                          "sieve")})
    ports = {f"port_{name}": port for name, port in server.ports.items()}
    (cwd / "dovecot.conf").write_text(DOVECOT_CONF.format(cwd=cwd, tls_suite=suite, **ports))
    # -F: stay in the foreground; its own log_path keeps the log in cwd.
    launch(server, [dovecot, "-F", "-c", str(cwd / "dovecot.conf")], cwd=cwd)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def dovecot_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_dovecot(server_files) as server:
        yield server


VSFTPD_CONF = """\
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port={port}
background=NO
anonymous_enable=NO
local_enable=YES
ssl_enable=YES
rsa_cert_file={cwd}/cert.pem
rsa_private_key_file={cwd}/key.pem
secure_chroot_dir={cwd}/empty
xferlog_enable=NO
seccomp_sandbox=NO
"""


@contextlib.contextmanager
def start_vsftpd(server_files: ServerFiles,
                 ports: Mapping[str, int] | None = None) -> Iterator[RealServer]:
    vsftpd = require_binary("vsftpd")
    require_root("vsftpd")
    cwd = server_files.workdir("vsftpd")
    (cwd / "empty").mkdir()
    server = RealServer("vsftpd", package_version("vsftpd"), {"ftp": pick(ports, "ftp")})
    (cwd / "vsftpd.conf").write_text(VSFTPD_CONF.format(port=server.port(), cwd=cwd))
    launch(server, [vsftpd, str(cwd / "vsftpd.conf")], cwd=cwd)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def vsftpd_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_vsftpd(server_files) as server:
        yield server


@contextlib.contextmanager
def start_slapd(server_files: ServerFiles,
                ports: Mapping[str, int] | None = None) -> Iterator[RealServer]:
    slapd = require_binary("slapd")
    cwd = server_files.workdir("slapd")
    # No database: the RootDSE and the StartTLS extended operation need none.
    (cwd / "slapd.conf").write_text(
        "include /etc/ldap/schema/core.schema\n"
        f"pidfile {cwd}/slapd.pid\n"
        f"TLSCertificateFile {cwd}/cert.pem\n"
        f"TLSCertificateKeyFile {cwd}/key.pem\n")
    server = RealServer("slapd", package_version("slapd"), {"ldap": pick(ports, "ldap")})
    # -d 0: stay in the foreground, logging nothing but errors.
    launch(server, [slapd, "-d", "0", "-f", str(cwd / "slapd.conf"),
                    "-h", f"ldap://127.0.0.1:{server.port()}/"], cwd=cwd)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def slapd_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_slapd(server_files) as server:
        yield server


@contextlib.contextmanager
def start_mariadb(server_files: ServerFiles,
                  ports: Mapping[str, int] | None = None) -> Iterator[RealServer]:
    mariadbd = require_binary("mariadbd")
    install_db = require_binary("mariadb-install-db")
    user = service_user("mysql")
    cwd = server_files.workdir("mariadb", user)
    user_option = [f"--user={user}"] if user else []
    run_setup([install_db, "--no-defaults", f"--datadir={cwd / 'data'}", *user_option,
               "--auth-root-authentication-method=normal", "--skip-test-db"], cwd=cwd)
    version, cipher = "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"
    server = RealServer("mariadb", package_version("mariadb-server"),
                        {"mysql": pick(ports, "mysql")},
                        pinned_tls={"mysql": (version, cipher)})
    launch(server, [mariadbd, "--no-defaults", f"--datadir={cwd / 'data'}", *user_option,
                    "--bind-address=127.0.0.1", f"--port={server.port()}",
                    f"--socket={cwd / 'mysqld.sock'}", f"--pid-file={cwd / 'mysqld.pid'}",
                    f"--ssl-cert={cwd / 'cert.pem'}", f"--ssl-key={cwd / 'key.pem'}",
                    f"--tls-version={version}", f"--ssl-cipher={cipher}",
                    "--innodb-buffer-pool-size=8M", "--skip-log-bin",
                    f"--log-error={cwd / 'server.log'}"],
           cwd=cwd, ready_marker="ready for connections")
    with running(server):
        yield server


@pytest.fixture(scope="session")
def mariadb_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_mariadb(server_files) as server:
        yield server


PROSODY_CONF = """\
pidfile = "{cwd}/prosody.pid"
data_path = "{cwd}/data"
daemonize = false
log = {{ {{ levels = {{ min = "info" }}, to = "console" }} }}
certificates = "{cwd}"
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
s2s_ports = {{ {s2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
modules_enabled = {{ "tls", "saslauth", "disco", "dialback" }}
modules_disabled = {{ "posix" }}
authentication = "internal_hashed"
ssl = {{ certificate = "{cwd}/cert.pem", key = "{cwd}/key.pem" }}
VirtualHost "localhost"
"""


@contextlib.contextmanager
def start_prosody(server_files: ServerFiles,
                  ports: Mapping[str, int] | None = None) -> Iterator[RealServer]:
    prosody = require_binary("prosody")
    user = service_user("prosody")
    cwd = server_files.workdir("prosody", user)
    (cwd / "data").mkdir()
    if user is not None:
        account = pwd.getpwnam(user)
        os.chown(cwd / "data", account.pw_uid, account.pw_gid)
    server = RealServer("prosody", package_version("prosody"),
                        {"xmpp": pick(ports, "xmpp"), "xmpp-server": pick(ports, "xmpp-server")})
    (cwd / "prosody.cfg.lua").write_text(PROSODY_CONF.format(
        cwd=cwd, port=server.port("xmpp"), s2s_port=server.port("xmpp-server")))
    launch(server, [prosody, "--config", str(cwd / "prosody.cfg.lua"), "-F"],
           cwd=cwd, user=user)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def prosody_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_prosody(server_files) as server:
        yield server


# InspIRCd 3 with its STARTTLS module. No hostname lookups (resolvehostnames="no"), and
# any it might still make go to 127.0.0.1: nothing leaves the machine.
INSPIRCD_CONF = """\
<server name="irc.localhost" description="tcpcli tests" network="tcpcli">
<admin name="tcpcli" nick="tcpcli" email="tcpcli@localhost">
<module name="cap">
<module name="ssl_gnutls">
<module name="starttls">
<sslprofile name="main" provider="gnutls" certfile="{cwd}/cert.pem" keyfile="{cwd}/key.pem"
            hash="sha256" requestclientcert="no">
<starttls provider="main">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect allow="*" resolvehostnames="no" useident="no" timeout="20" pingfreq="120"
         hardsendq="1M" softsendq="8192" recvq="8192" threshold="100" commandrate="1000"
         fakelag="no" localmax="100" globalmax="100" limit="100">
<class name="all" commands="*">
<files motd="{cwd}/motd.txt">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{cwd}/ircd.log">
<dns server="127.0.0.1" timeout="1">
<options>
<security>
<performance>
"""


@contextlib.contextmanager
def start_inspircd(server_files: ServerFiles,
                   ports: Mapping[str, int] | None = None) -> Iterator[RealServer]:
    inspircd = require_binary("inspircd")
    user = service_user("irc")  # it refuses to run as root
    cwd = server_files.workdir("inspircd", user)
    server = RealServer("inspircd", package_version("inspircd"), {"irc": pick(ports, "irc")})
    (cwd / "inspircd.conf").write_text(INSPIRCD_CONF.format(cwd=cwd, port=server.port()))
    (cwd / "motd.txt").write_text("tcpcli tests\n")
    launch(server, [inspircd, "--config", str(cwd / "inspircd.conf"), "--nofork", "--nopid"],
           cwd=cwd, user=user)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def inspircd_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_inspircd(server_files) as server:
        yield server


POSTFIX_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {cwd}/queue
data_directory = {cwd}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.tcpcli.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
maillog_file = /dev/stdout
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cwd}/cert.pem
smtpd_tls_key_file = {cwd}/key.pem
"""

#: smtpd and what it needs to answer EHLO and STARTTLS; no chroot, no delivery.
POSTFIX_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
postlog unix-dgram n - n - 1 postlogd
tlsmgr unix - - n 1000? 1 tlsmgr
proxymap unix - - n - - proxymap
anvil unix - - n - 1 anvil
cleanup unix n - n - 0 cleanup
"""


@contextlib.contextmanager
def start_postfix(server_files: ServerFiles,
                  ports: Mapping[str, int] | None = None) -> Iterator[RealServer]:
    postfix = require_binary("postfix")
    require_root("postfix")
    cwd = server_files.workdir("postfix")
    (cwd / "conf").mkdir()
    (cwd / "queue").mkdir()
    (cwd / "data").mkdir()
    account = pwd.getpwnam("postfix")
    os.chown(cwd / "data", account.pw_uid, account.pw_gid)
    server = RealServer("postfix", package_version("postfix"), {"smtp": pick(ports, "smtp")},
                        stop_argv=[postfix, "-c", str(cwd / "conf"), "stop"])
    (cwd / "conf" / "main.cf").write_text(POSTFIX_MAIN_CF.format(cwd=cwd))
    (cwd / "conf" / "master.cf").write_text(POSTFIX_MASTER_CF.format(port=server.port()))
    # start-fg: the master stays in the foreground (in a session of its own).
    launch(server, [postfix, "-c", str(cwd / "conf"), "start-fg"], cwd=cwd)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def postfix_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_postfix(server_files) as server:
        yield server


# INN's reader, nnrpd, as a daemon of its own (-D -f): no innd, and no articles (the trash
# storage method). It reads no INN file but ours (INNCONF), has a domain (inn.conf must, on
# a host whose name is no FQDN) and resolves no client address (-n).
INN_CONF = """\
domain: localdomain
pathhost: news.tcpcli.test
mta: "/bin/false %s"
hismethod: hisv6
ovmethod: tradindexed
pathnews: /usr/lib/news
pathetc: {cwd}
pathdb: {cwd}
pathrun: {cwd}
pathlog: {cwd}
pathtmp: {cwd}
pathspool: {cwd}
pathoverview: {cwd}
tlscertfile: {cwd}/cert.pem
tlskeyfile: {cwd}/key.pem
tlsprotocols: [ {tls_version} ]
tlsciphers13: {tls_suite}
"""

INN_STORAGE_CONF = """\
method trash {
    newsgroups: *
    class: 0
}
"""

INN_READERS_CONF = """\
auth "all" {
    hosts: "*"
    default: "<tcpcli>"
}
access "all" {
    users: "*"
    newsgroups: "*"
}
"""


@contextlib.contextmanager
def start_inn(server_files: ServerFiles,
              ports: Mapping[str, int] | None = None) -> Iterator[RealServer]:
    nnrpd = require_binary("nnrpd", pattern="/usr/lib/news/bin/nnrpd")
    user = service_user("news")  # as innd would start it
    cwd = server_files.workdir("inn", user)
    version, suite = "TLSv1.3", "TLS_AES_128_GCM_SHA256"  # not OpenSSL's first choice
    server = RealServer("inn", package_version("inn2"), {"nntp": pick(ports, "nntp")},
                        pinned_tls={"nntp": (version, suite)})
    (cwd / "inn.conf").write_text(INN_CONF.format(cwd=cwd, tls_version=version,
                                                  tls_suite=suite))
    (cwd / "storage.conf").write_text(INN_STORAGE_CONF)
    (cwd / "readers.conf").write_text(INN_READERS_CONF)
    (cwd / "active").write_text("tcpcli.test 0000000000 0000000001 y\n")  # one empty group
    inn_conf = f"INNCONF={cwd / 'inn.conf'}"
    # nnrpd opens the overview before it greets: create its empty index.
    run_setup(["env", inn_conf, str(Path(nnrpd).parent / "makehistory"), "-O", "-x"],
              user=user, cwd=cwd)
    launch(server, ["env", inn_conf, nnrpd, "-D", "-f", "-n", "-b", "127.0.0.1",
                    "-p", str(server.port())], cwd=cwd, user=user)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def inn_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_inn(server_files) as server:
        yield server


# --------------------------------------------------------------------------- identification
# Servers that speak no STARTTLS, for probe's service identification: each on a free port
# with a throwaway configuration (never the system's daemon or its files).

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {cwd}/ssh_host_ed25519_key
PidFile {cwd}/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile none
AllowUsers nobody-tcpcli
"""


@contextlib.contextmanager
def start_sshd(server_files: ServerFiles,
               ports: Mapping[str, int] | None = None) -> Iterator[RealServer]:
    sshd = require_binary("sshd")
    keygen = require_binary("ssh-keygen")
    require_root("sshd")
    cwd = server_files.workdir("sshd")
    run_setup([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "tcpcli-test",
               "-f", str(cwd / "ssh_host_ed25519_key")], cwd=cwd)
    # sshd insists on its privilege-separation directory (Debian's unit creates it).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    server = RealServer("sshd", package_version("openssh-server"), {"ssh": pick(ports, "ssh")})
    (cwd / "sshd_config").write_text(SSHD_CONFIG.format(port=server.port(), cwd=cwd))
    # -D: no daemon; -e: log to stderr (our log file); an absolute path, as sshd requires.
    launch(server, [sshd, "-D", "-e", "-f", str(cwd / "sshd_config")], cwd=cwd)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def sshd_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_sshd(server_files) as server:
        yield server


@contextlib.contextmanager
def start_redis(server_files: ServerFiles, ports: Mapping[str, int] | None = None, *,
                password: str | None = None) -> Iterator[RealServer]:
    """redis-server without persistence; with ``password`` every command but AUTH answers
    NOAUTH (the password is the server's configuration: no probe ever sends one)."""
    redis = require_binary("redis-server")
    name = "redis-auth" if password else "redis"
    cwd = server_files.workdir(name)
    server = RealServer(name, package_version("redis-server"), {"redis": pick(ports, "redis")})
    config = [f"port {server.port()}", "bind 127.0.0.1", "save \"\"", "appendonly no",
              f"dir {cwd}", "daemonize no", f"pidfile {cwd}/redis.pid", "loglevel warning"]
    if password:
        config.append(f"requirepass {password}")
    (cwd / "redis.conf").write_text("\n".join(config) + "\n")
    launch(server, [redis, str(cwd / "redis.conf")], cwd=cwd)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def redis_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_redis(server_files) as server:
        yield server


@pytest.fixture(scope="session")
def redis_auth_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_redis(server_files, password=os.urandom(12).hex()) as server:
        yield server


MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous {anonymous}
persistence false
pid_file {cwd}/mosquitto.pid
log_dest stdout
"""


@contextlib.contextmanager
def start_mosquitto(server_files: ServerFiles, ports: Mapping[str, int] | None = None, *,
                    anonymous: bool = True) -> Iterator[RealServer]:
    mosquitto = require_binary("mosquitto")
    user = service_user("mosquitto")  # as root it would switch to this user itself
    cwd = server_files.workdir("mosquitto", user)
    server = RealServer("mosquitto", package_version("mosquitto"), {"mqtt": pick(ports, "mqtt")})
    (cwd / "mosquitto.conf").write_text(MOSQUITTO_CONF.format(
        port=server.port(), cwd=cwd, anonymous="true" if anonymous else "false"))
    launch(server, [mosquitto, "-c", str(cwd / "mosquitto.conf")], cwd=cwd)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def mosquitto_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_mosquitto(server_files) as server:
        yield server


@contextlib.contextmanager
def start_http(server_files: ServerFiles,
               ports: Mapping[str, int] | None = None) -> Iterator[RealServer]:
    """Python's own http.server, serving an empty directory: an HTTP server as it ships."""
    cwd = server_files.workdir("http")
    (cwd / "www").mkdir()
    server = RealServer("http.server", platform.python_version(), {"http": pick(ports, "http")})
    launch(server, [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                    "--directory", str(cwd / "www"), str(server.port())], cwd=cwd)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def http_server(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_http(server_files) as server:
        yield server


@contextlib.contextmanager
def start_tls_peer(server_files: ServerFiles,
                   ports: Mapping[str, int] | None = None) -> Iterator[RealServer]:
    """``openssl s_server -www``: implicit TLS with the session's certificate, and HTTP
    inside it (its status page)."""
    openssl = require_binary("openssl")
    cwd = server_files.workdir("tls")
    server = RealServer("openssl s_server", package_version("openssl"),
                        {"tls": pick(ports, "tls")})
    launch(server, [openssl, "s_server", "-accept", f"127.0.0.1:{server.port()}",
                    "-cert", str(cwd / "cert.pem"), "-key", str(cwd / "key.pem"),
                    "-alpn", "http/1.1", "-www", "-quiet"], cwd=cwd)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def tls_peer(server_files: ServerFiles) -> Iterator[RealServer]:
    with start_tls_peer(server_files) as server:
        yield server
