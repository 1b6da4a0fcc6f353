"""``tcpcli connect`` as a user runs it: the installed CLI as a subprocess, real peers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_cli, tcpcli_command
from tests.support.peers import LoopbackServer, answer_sha256, echo, recv_all, reset, serve

BACKENDS = ["asyncio", "trio"]


@pytest.fixture
def random_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    path = tmp_path_factory.mktemp("data") / "random.bin"
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(256):
            block = os.urandom(1024 * 1024)
            digest.update(block)
            f.write(block)
    return str(path), digest.hexdigest()


def sha256_echo(received: dict[str, str], slow: bool = False) -> object:
    """Echo everything back while hashing it; optionally read slowly (64 KiB + pause)."""
    def handler(conn: socket.socket) -> None:
        digest = hashlib.sha256()
        while True:
            data = conn.recv(65536)
            if not data:
                break
            digest.update(data)
            conn.sendall(data)
            if slow:
                time.sleep(0.0005)
        received["sha256"] = digest.hexdigest()
    return handler


@pytest.mark.parametrize("slow", [False, True], ids=["fast-peer", "slow-peer"])
def test_256_mib_each_way_plain(random_file: tuple[str, str], slow: bool) -> None:
    path, expected = random_file
    received: dict[str, str] = {}
    with serve(sha256_echo(received, slow)) as server, open(path, "rb") as stdin:
        proc = subprocess.run([*tcpcli_command(), "connect", server.address,
                               "--allow", "127.0.0.1"], stdin=stdin, capture_output=True,
                              timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert received["sha256"] == expected
    assert hashlib.sha256(proc.stdout).hexdigest() == expected


def test_256_mib_each_way_plain_from_a_pipe(random_file: tuple[str, str]) -> None:
    # stdin a pipe, not a file: read and sent by us rather than copied by the kernel.
    path, expected = random_file
    received: dict[str, str] = {}
    with serve(sha256_echo(received)) as server, \
            subprocess.Popen(["cat", path], stdout=subprocess.PIPE) as cat:
        proc = subprocess.run([*tcpcli_command(), "connect", server.address,
                               "--allow", "127.0.0.1"], stdin=cat.stdout, capture_output=True,
                              timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert received["sha256"] == expected
    assert hashlib.sha256(proc.stdout).hexdigest() == expected


@pytest.mark.parametrize("how", ["stdin", "send-file", "stdin-crlf"])
def test_a_file_is_sent_exactly_from_its_position(how: str, tmp_path: Path) -> None:
    content = os.urandom(3 * 1024 * 1024 + 7)
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    with serve(answer_sha256) as server, path.open("rb") as stdin:
        if how == "send-file":
            args, expected = ["--send-file", str(path)], content
        else:
            stdin.seek(1000)  # a shell leaves it here after `head -c 1000`, say
            args, expected = [], content[1000:]
            if how == "stdin-crlf":  # a per-chunk rewrite: read and sent by us
                args, expected = ["--crlf"], expected.replace(b"\r\n", b"\n").replace(
                    b"\n", b"\r\n")
        proc = subprocess.run([*tcpcli_command(), "connect", server.address, *args,
                               "--allow", "127.0.0.1"], stdin=stdin, capture_output=True,
                              timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == hashlib.sha256(expected).digest()


def test_256_mib_each_way_tls(random_file: tuple[str, str], server_ssl_context: ssl.SSLContext,
                              ca_file: str) -> None:
    path, expected = random_file
    received: dict[str, str] = {}
    with serve(sha256_echo(received), ssl_context=server_ssl_context) as server, \
            open(path, "rb") as stdin:
        proc = subprocess.run([*tcpcli_command(), "connect", server.address, "--tls",
                               "--ca-file", ca_file, "--allow", "127.0.0.1"],
                              stdin=stdin, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert received["sha256"] == expected
    assert hashlib.sha256(proc.stdout).hexdigest() == expected


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_answer_after_our_eof_is_printed_whole(backend: str, tls: bool,
                                                server_ssl_context: ssl.SSLContext,
                                                ca_file: str) -> None:
    """stdin EOF is a half-close (FIN; close_notify over TLS): the late answer still arrives."""
    def late_answer(conn: socket.socket) -> None:
        request = recv_all(conn)  # until our FIN / close_notify
        time.sleep(1.0)
        conn.sendall(b"answer to " + request + b"\n" + b"x" * 100_000)

    tls_args = ["--tls", "--ca-file", ca_file] if tls else []
    with serve(late_answer, ssl_context=server_ssl_context if tls else None) as server:
        proc = run_cli("connect", server.address, "--allow", "127.0.0.1", *tls_args,
                       stdin=b"question", backend=backend)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"answer to question\n" + b"x" * 100_000


def test_tls_eof_wait_sends_no_close_notify_and_reads_until_the_server_closes(
        server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    def answer_then_close(conn: socket.socket) -> None:
        # Answers each line; closes after QUIT without waiting for our close_notify.
        reader = conn.makefile("rb")
        while line := reader.readline():
            time.sleep(0.2)  # the answer comes well after our stdin has ended
            conn.sendall(b"ok " + line)
            if line == b"QUIT\n":
                return

    def wait_for_close_notify(conn: socket.socket) -> None:
        request = recv_all(conn)  # until our close_notify, which never comes
        conn.sendall(b"answer to " + request)

    tls = ["--tls", "--ca-file", ca_file, "--allow", "127.0.0.1"]
    with serve(answer_then_close, ssl_context=server_ssl_context) as server:
        proc = run_cli("connect", server.address, *tls, "--tls-eof", "wait",
                       stdin=b"HELLO\nQUIT\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"ok HELLO\nok QUIT\n"
    with serve(wait_for_close_notify, ssl_context=server_ssl_context) as server:
        proc = run_cli("connect", server.address, *tls, "--tls-eof", "wait",
                       "--idle-timeout", "1", stdin=b"question")
    assert proc.returncode == 6, proc.stderr  # nothing ends the run but the idle timeout
    assert proc.stdout == b""


@pytest.mark.parametrize("backend", BACKENDS)
def test_peer_closing_first_ends_the_run_while_stdin_is_open(backend: str) -> None:
    def greet_and_close(conn: socket.socket) -> None:
        conn.sendall(b"bye\n")

    with serve(greet_and_close) as server:
        # stdin is a pipe that stays open: the run must not wait for it.
        proc = subprocess.Popen([*tcpcli_command(), "connect", server.address, "--allow",
                                 "127.0.0.1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                env={**os.environ, "TCPCLI_BACKEND": backend})
        start = time.monotonic()
        try:
            proc.wait(timeout=5)  # not communicate(): that would close stdin
        finally:
            proc.kill()
        elapsed = time.monotonic() - start
        assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.stdin.close()
    assert proc.returncode == 0, err
    assert out == b"bye\n"
    assert b"peer closed" in err
    assert elapsed < 1.0 + 1.5  # generous for interpreter start-up on a loaded machine


@pytest.mark.parametrize("backend", BACKENDS)
def test_peer_reset_mid_stream(backend: str) -> None:
    def partial_then_reset(conn: socket.socket) -> None:
        conn.sendall(b"partial")
        time.sleep(0.1)
        reset(conn)

    with serve(partial_then_reset) as server:
        proc = subprocess.Popen([*tcpcli_command(), "connect", server.address, "--allow",
                                 "127.0.0.1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                env={**os.environ, "TCPCLI_BACKEND": backend})
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 10, err
    assert out == b"partial"
    assert b"reset" in err
    assert b"Traceback" not in err
    assert len(err.decode().strip().splitlines()) == 1


def test_head_closing_stdout_is_quiet() -> None:
    def firehose(conn: socket.socket) -> None:
        try:
            while True:
                conn.sendall(b"y" * 65536)
        except OSError:
            pass

    with serve(firehose) as server:
        cmd = " ".join([*tcpcli_command(), "connect", server.address, "--allow", "127.0.0.1",
                        "--no-stdin"])
        proc = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd} | head -c 1"],
                              capture_output=True, timeout=20)
    assert proc.stdout == b"y"
    assert proc.stderr == b"", proc.stderr
    assert proc.returncode == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigint_exits_130_and_the_peer_sees_the_close(backend: str) -> None:
    closed = threading.Event()

    def wait_for_close(conn: socket.socket) -> None:
        conn.sendall(b"hello\n")
        conn.settimeout(10)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        closed.set()

    with serve(wait_for_close) as server:
        proc = subprocess.Popen([*tcpcli_command(), "connect", server.address, "--allow",
                                 "127.0.0.1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                env={**os.environ, "TCPCLI_BACKEND": backend})
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"hello\n"
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        assert closed.wait(2.0), "the peer did not see the close within 2 s"
        assert time.monotonic() - sent < 2.0
        _, err = proc.communicate(timeout=5)
    assert proc.returncode == 130
    assert b"Traceback" not in err


MALFORMED = [
    [], ["host"], ["host:"], [":80"], ["host:0"], ["host:65536"], ["host:-1"], ["host:+80"],
    ["host:８０"], ["host:8_0"], ["host: 80"], ["host:80x"], ["[::1]"], ["[::1"], ["::1:80:x"],
    ["host", "99999"], ["host", "abc"], ["host:80", "--timeout", "0"],
    ["host:80", "--timeout", "abc"], ["host:80", "--timeout", "-1"],
    ["host:80", "--policy", "nope"], ["host:80", "--max-sockets", "x"],
    ["host:80", "--max-sockets", "-3"], ["host:80", "--tls-min", "1.4"],
    ["host:80", "--tls-max", "ssl3"], ["host:80", "-4", "-6"], ["host:80", "--bogus"],
    ["host:80", "--ca-file", "/nonexistent/ca.pem"], ["host:80", "--cert", "/nonexistent"],
    ["host:80", "--send", "a", "--no-stdin"], ["host:80", "--send", "a", "--send-file", "/etc/hostname"],
    ["host:80", "--send-file", "/nonexistent"], ["host:80", "--idle-timeout", "0"],
    ["host:80", "--idle-timeout", "x"], ["host:80", "--transcript-format", "png"],
    ["host:80", "--alpn"], ["host:80", "--resolver", "not an ip"],
    ["host:80", "--resolver", "1.2.3.4:99999"], ["host:80", "--allow", "300.1.1.1/8"],
    ["host:80", "--deny", "1.2.3.4/99"], ["host:80", "--proxy"],
    ["a b:80"], ["host/path:80"], ["user@host:80"], ["host:80:90"], ["[fe80::1%lo]:80"],
    ["host\x01:80"], ["ho st", "80"], ["host:80", "extra", "args"], ["host:80", "--key", "/etc/hostname"],
]


@pytest.mark.parametrize("argv", MALFORMED, ids=[" ".join(a) or "<none>" for a in MALFORMED])
def test_malformed_invocations_exit_2_with_one_line(argv: list[str]) -> None:
    proc = run_cli("connect", *argv, timeout=30)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert proc.stdout == b""


def test_localhost_is_blocked_and_nothing_is_sent() -> None:
    with serve(echo) as server:
        proc = run_cli("connect", f"localhost:{server.port}", stdin=b"hi")
        blocked_ip = run_cli("connect", server.address, stdin=b"hi")
        time.sleep(0.1)
        assert server.connections == []
        allowed = run_cli("connect", server.address, "--allow", "127.0.0.1", stdin=b"hi")
    assert proc.returncode == 3
    err = proc.stderr.decode()
    assert "loopback" in err
    assert "--allow" in err
    assert "proxy request failed" in err  # what a Worker would get
    assert blocked_ip.returncode == 3
    assert allowed.returncode == 0
    assert allowed.stdout == b"hi"


def test_refused_has_its_own_exit_code() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = run_cli("connect", f"127.0.0.1:{port}", "--allow", "127.0.0.1")
    assert proc.returncode == 5
    assert b"refused" in proc.stderr


def test_verbose_waterfall_and_json_events(server_ssl_context: ssl.SSLContext,
                                           ca_file: str) -> None:
    import json

    with serve(echo, ssl_context=server_ssl_context) as server:
        verbose = run_cli("connect", server.address, "--tls", "--ca-file", ca_file,
                          "--allow", "127.0.0.1", "-v", stdin=b"ping")
        events = run_cli("connect", server.address, "--tls", "--ca-file", ca_file,
                         "--allow", "127.0.0.1", "--json", stdin=b"ping")
    assert verbose.returncode == 0
    assert verbose.stdout == b"ping"
    err = verbose.stderr.decode()
    for expected in ("tcp connect", "tls handshake", "tls verify: ok", "cert[0] subject",
                     "closed: "):
        assert expected in err, err
    assert events.returncode == 0
    assert events.stdout == b"ping"
    records = [json.loads(line) for line in events.stderr.decode().splitlines()]
    assert {r["schema"] for r in records} == {"tcpcli/1"}
    kinds = [r["event"] for r in records]
    assert kinds[0] == "attempt"
    assert "tls" in kinds
    assert "connected" in kinds
    assert kinds[-1] == "close"
    assert all(isinstance(r["t_ms"], float | int) for r in records)
    close = records[-1]
    assert close["bytes_sent"] == 4
    assert close["bytes_received"] == 4


def test_idle_timeout() -> None:
    def silent(conn: socket.socket) -> None:
        time.sleep(5)

    with serve(silent) as server:
        start = time.monotonic()
        proc = run_cli("connect", server.address, "--allow", "127.0.0.1", "--no-stdin",
                       "--idle-timeout", "0.3")
    assert proc.returncode == 6
    assert time.monotonic() - start < 4
    assert b"idle" in proc.stderr


def test_send_with_crlf_and_transcript(tmp_path: object) -> None:
    from pathlib import Path

    got: list[bytes] = []

    def capture(conn: socket.socket) -> None:
        got.append(recv_all(conn))
        conn.sendall(b"+PONG\r\n")

    transcript = Path(str(tmp_path)) / "t.log"
    with serve(capture) as server:
        proc = run_cli("connect", server.address, "--allow", "127.0.0.1", "--send",
                       r"PING\n", "--crlf", "--transcript", str(transcript))
    assert proc.returncode == 0
    assert proc.stdout == b"+PONG\r\n"
    assert got == [b"PING\r\n"]
    log = transcript.read_text()
    assert "> 6 bytes" in log
    assert "< 7 bytes" in log
    assert "50 49 4e 47 0d 0a" in log


def test_ipv6_target_form() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with LoopbackServer(echo, host="::1") as server:
        proc = run_cli("connect", f"[::1]:{server.port}", "--allow", "::1", stdin=b"v6")
        two_args = run_cli("connect", "::1", str(server.port), "--allow", "::1", stdin=b"v6")
    assert proc.returncode == 0 and proc.stdout == b"v6", proc.stderr
    assert two_args.returncode == 0 and two_args.stdout == b"v6", two_args.stderr


def test_errors_end_with_the_flags_that_fix_them(server_ssl_context: ssl.SSLContext) -> None:
    # An unknown CA (the default trust store does not know the test CA): exit 7, and
    # the line names --ca-file, --pin and --insecure.
    with serve(echo, ssl_context=server_ssl_context) as server:
        proc = run_cli("connect", f"localhost:{server.port}", "--allow", "localhost",
                       "--tls", "--no-stdin")
    assert proc.returncode == 7, proc.stderr
    line = proc.stderr.decode().strip()
    assert line.startswith(f"tcpcli: TLS certificate of localhost:{server.port} failed "
                           "verification: ")
    assert line.endswith("(trust its CA with --ca-file FILE, accept its key with --pin, "
                         "or go on regardless with --insecure)")
    assert line.count("\n") == 0


def keepalive_timer(local_port: int) -> str:
    """What ``ss`` says of the socket from ``local_port``: its timer, if it has one."""
    proc = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{local_port} )"],
                          capture_output=True, text=True, timeout=10, check=False)
    return proc.stdout


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_keepalive_is_set_on_the_connection(tls: bool, server_ssl_context: ssl.SSLContext,
                                            ca_file: str) -> None:
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    peers: list[tuple[str, int]] = []

    def hold(conn: socket.socket) -> None:
        peers.append(conn.getpeername())
        if tls:
            conn = server_ssl_context.wrap_socket(conn, server_side=True)
        time.sleep(1.5)
        conn.close()

    for keepalive in (True, False):
        peers.clear()
        with serve(hold) as server:
            args = ["connect", server.address, "--allow", "127.0.0.1", "--no-stdin",
                    *(["--keepalive", "30,5,3"] if keepalive else []),
                    *(["--tls", "--ca-file", ca_file] if tls else [])]
            proc = subprocess.Popen([*tcpcli_command(), *args], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 5
            while not peers and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)  # connected (and the handshake done) before we look
            shown = keepalive_timer(peers[0][1])
            proc.wait(timeout=10)
        assert ("timer:(keepalive" in shown) is keepalive, shown


def test_keepalive_values_reach_the_kernel() -> None:
    from tcpcli.core.rawsocket import set_keepalive

    with socket.socket() as sock:
        set_keepalive(sock, 30, 5, 3)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3


@pytest.mark.parametrize(("value", "ok"), [("60", (60, 10, 5)), ("5", (5, 5, 5)),
                                           ("60,10,5", (60, 10, 5)), ("0", None),
                                           ("60,0", None), ("1,2,300", None), ("x", None),
                                           ("1,2,3,4", None), ("-1", None), ("1.5", None)])
def test_keepalive_values_are_checked(value: str, ok: tuple[int, int, int] | None) -> None:
    from tcpcli.cli.paramtypes import KEEPALIVE

    if ok is None:
        with pytest.raises(ValueError, match="keepalive|count|idle"):
            KEEPALIVE.parse(value)
    else:
        assert KEEPALIVE.parse(value) == ok


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO is Linux's")
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_the_kernels_facts_come_with_v_and_the_events(tls: bool, tmp_path: Path,
                                                      server_ssl_context: ssl.SSLContext,
                                                      ca_file: str) -> None:
    events = tmp_path / "events.jsonl"
    kwargs = {"ssl_context": server_ssl_context} if tls else {}
    with serve(echo, **kwargs) as server:  # type: ignore[arg-type]
        proc = run_cli("connect", server.address, "--allow", "127.0.0.1", "-v",
                       "--events", str(events),
                       *(["--tls", "--ca-file", ca_file] if tls else []), stdin=b"x" * 1000)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    assert "kernel tcp: rtt " in err and "(connected)" in err and "(at close)" in err
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    connected = next(e for e in lines if e["event"] == "connected")["tcp"]
    closed = next(e for e in lines if e["event"] == "close")["tcp"]
    assert connected["state"] == "established" and connected["mss"] > 0
    assert 0 < connected["rtt_ms"] < 1000 and connected["pmtu"] > 0
    assert closed["bytes_acked"] >= 1000  # what we sent, acknowledged by the peer
    assert closed["retransmits"] == 0  # loopback loses nothing


def test_an_older_kernels_shorter_struct_gives_the_fields_it_has() -> None:
    import struct as packing

    from tcpcli.core.tcpinfo import _unpack, describe

    # The first 8 bytes and 24 words, as a 2.6-era kernel fills them: no min_rtt, no rates.
    raw = bytes([1, 0, 0, 0, 0, 0, 0, 0]) + packing.pack("=24I", *range(24))
    fields = _unpack(raw)
    assert fields["state"] == 1 and fields["rtt"] == 15 and fields["total_retrans"] == 23
    assert "min_rtt" not in fields and "bytes_acked" not in fields
    line = describe({"rtt_ms": 0.015, "rttvar_ms": 0.016, "mss": 2, "pmtu": 13, "cwnd": 18,
                     "retransmits": 23, "lost": 6})
    assert line.startswith("kernel tcp: rtt 0.015 ms ±0.016") and "delivery" not in line
