"""``tcpcli bench`` as a user runs it (a subprocess against loopback peers), plus the engine
in-process where the test must see inside it (live sockets under the cap)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.support.cli import run_cli, tcpcli_command
from tests.support.peers import echo, reset, serve

ALLOW = ("--allow", "127.0.0.1")


def delayed_echo(delay: float) -> Callable[[socket.socket], None]:
    def handler(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            time.sleep(delay)
            conn.sendall(data)
    return handler


def bench_events(*args: str, backend: str = "asyncio"
                 ) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[bytes]]:
    """Run bench with --events FILE: its events, and the run (stdout keeps the report)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        proc = run_cli("bench", *args, "--events", str(path), backend=backend, timeout=60)
        lines = path.read_text().splitlines() if path.exists() else []
    events = [json.loads(line) for line in lines]
    assert all(e["schema"] == "tcpcli/1" for e in events), lines
    return events, proc


def bench_json(*args: str, backend: str = "asyncio") -> tuple[int, dict[str, Any], str]:
    """Run bench with its events in a file; return the exit code, the summary event and
    stdout (the report, as piped)."""
    events, proc = bench_events(*args, backend=backend)
    summaries = [e for e in events if e["event"] == "bench_summary"]
    assert summaries, proc.stderr
    return proc.returncode, summaries[0], proc.stdout.decode()


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_connect_mode_plain_report(backend: str) -> None:
    with serve(echo) as server:
        code, summary, out = bench_json(server.address, *ALLOW, "-n", "40", "--warmup", "5",
                                        backend=backend)
        time.sleep(0.1)
        assert len(server.connections) == 45  # warmup samples ran, and were not counted
    assert code == 0
    assert summary["samples"] == 40 and summary["errors"] == {}
    connect = summary["distributions"]["connect"]
    assert connect["count"] == 40
    assert 0 < connect["min_ms"] <= connect["p50_ms"] <= connect["p99_ms"] <= connect["max_ms"]
    assert summary["per_second"] > 0 and summary["unit"] == "conn/s"
    assert summary["peak_sockets"] <= 6
    lines = out.splitlines()  # piped: plain, one fact per line
    assert lines[2].startswith("samples     40 ok, 0 errors")
    assert any(line.startswith("connect ") and "p99.9=" in line for line in lines)
    # The kernel's view, one reading per measured connection (Linux TCP_INFO).
    kernel = summary["kernel"]
    assert kernel["connections"] == 40 and kernel["retransmits"] == 0
    assert 0 < kernel["rtt"]["p50_ms"] <= kernel["rtt"]["max_ms"]
    assert any(re.match(r"kernel      rtt p50=[\d.]+ p99=[\d.]+ max=[\d.]+ ms \(n=40\) "
                        r"retransmits=0$", line) for line in lines), lines


def test_rr_percentiles_bracket_the_injected_delay() -> None:
    delay = 0.05
    with serve(delayed_echo(delay)) as server:
        code, summary, out = bench_json(server.address, *ALLOW, "--mode", "rr", "--send",
                                        "PING\\r\\n", "--reply", "\\r\\n", "-n", "30",
                                        "-c", "3")
    assert code == 0, out
    rr = summary["distributions"]["rr"]
    assert rr["count"] == 30
    assert delay * 1000 <= rr["min_ms"]
    assert delay * 1000 <= rr["p50_ms"] <= rr["p99_ms"] < delay * 1000 + 40
    assert summary["unit"] == "req/s"
    assert "rr          min=" in out
    # One reading per kept connection, at its end (its RTT samples include the server's
    # delayed ACKs, so no bound against the 50 ms here).
    kernel = summary["kernel"]
    assert kernel["connections"] == 3 and kernel["rtt"]["min_ms"] > 0


def test_tls_handshake_is_its_own_distribution(server_ssl_context: ssl.SSLContext,
                                               ca_file: str) -> None:
    with serve(echo, ssl_context=server_ssl_context) as server:
        code, summary, _ = bench_json(server.address, *ALLOW, "--tls", "--ca-file", ca_file,
                                      "-n", "20")
        unverified_code, unverified, _ = bench_json(server.address, *ALLOW, "--tls", "-n", "5")
    assert code == 0
    assert summary["errors"] == {}
    assert summary["distributions"]["connect"]["count"] == 20
    assert summary["distributions"]["tls"]["count"] == 20
    assert summary["distributions"]["tls"]["p50_ms"] > 0
    # certifi does not trust the test CA: every sample fails verification, counted by kind
    assert unverified["errors"] == {"tls-verify": 5}
    assert unverified["samples"] == 0 and unverified_code == 7


def test_refused_is_counted_by_kind() -> None:
    code, summary, out = bench_json(f"127.0.0.1:{free_port()}", *ALLOW, "-n", "12")
    assert summary["errors"] == {"refused": 12}
    assert summary["samples"] == 0
    assert code == 5  # nothing succeeded: the exit code of the errors' kind
    assert "errors      refused=12" in out


def test_resets_are_counted_by_kind() -> None:
    def reset_after_request(conn: socket.socket) -> None:
        conn.recv(100)
        reset(conn)

    with serve(reset_after_request) as server:
        _, summary, _ = bench_json(server.address, *ALLOW, "--mode", "rr", "--send", "x",
                                   "-n", "10", "-c", "2")
    assert summary["errors"] == {"reset": 10}


def test_rate_mode_holds_its_rate() -> None:
    with serve(echo) as server:
        code, summary, _ = bench_json(server.address, *ALLOW, "--rate", "100", "--duration",
                                      "1.5")
    assert code == 0
    assert 140 <= summary["samples"] <= 151
    assert 85 <= summary["per_second"] <= 110
    assert summary["rate_target"] == 100


def test_open_loop_latency_counts_from_the_intended_start() -> None:
    """A server slower than the rate: a closed loop would report 100 ms every time; the
    open loop reports the queueing the late requests suffered (coordinated omission)."""
    with serve(delayed_echo(0.1)) as server:
        _, summary, _ = bench_json(server.address, *ALLOW, "--mode", "rr", "--send", "x",
                                   "-c", "1", "--rate", "20", "-n", "10")
    rr = summary["distributions"]["rr"]
    assert 95 <= rr["min_ms"] < 150
    assert rr["max_ms"] > 450  # the 10th was due at 450 ms and answered at ~1000 ms


def test_save_and_compare_exit_9_on_a_regression(tmp_path: Any) -> None:
    base = str(tmp_path / "base.json")
    args = ("--mode", "rr", "--send", "x", "-n", "20", "-c", "2")
    delay = [0.01]  # the same service, slower after the baseline was saved

    def service(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            time.sleep(delay[0])
            conn.sendall(data)

    with serve(service) as server:
        code, _, _ = bench_json(server.address, *ALLOW, *args, "--save", base)
        same_code, _, same_out = bench_json(server.address, *ALLOW, *args, "--compare", base,
                                            "--threshold", "300%")
        delay[0] = 0.06
        events, proc = bench_events(server.address, *ALLOW, *args, "--compare", base)
    assert code == 0
    assert json.loads(Path(base).read_text())["kind"] == "tcpcli-bench-baseline"
    assert same_code == 0, same_out
    assert proc.returncode == 9
    compare = next(e for e in events if e["event"] == "bench_compare")
    assert compare["regressed"] == ["rr"]
    assert compare["deltas"]["rr"]["p99"]["change_pct"] > 100
    assert "REGRESSED" in proc.stdout.decode()


def test_compare_against_another_mode_or_target_is_a_usage_error(tmp_path: Path) -> None:
    base = str(tmp_path / "base.json")
    with serve(echo) as server:
        code, _, _ = bench_json(server.address, *ALLOW, "-n", "5", "--save", base)
        other_mode = run_cli("bench", server.address, *ALLOW, "--mode", "rr", "--send", "x",
                             "-n", "5", "--compare", base)
        other_target = run_cli("bench", f"127.0.0.2:{server.port}", "--allow", "127.0.0.2",
                               "-n", "5", "--compare", base)
        time.sleep(0.1)
        assert len(server.connections) == 5  # the refused comparisons measured nothing
    assert code == 0
    for proc, theirs, ours in (
            (other_mode, f"connect to {server.address}", f"rr to {server.address}"),
            (other_target, f"connect to {server.address}",
             f"connect to 127.0.0.2:{server.port}")):
        err = proc.stderr.decode()
        assert proc.returncode == 2, err
        assert len(err.strip().splitlines()) == 1, err
        assert f"measured {theirs}, this run measures {ours}" in err, err
        assert proc.stdout == b""


def test_concurrency_past_the_cap_needs_max_sockets() -> None:
    proc = run_cli("bench", "127.0.0.1:1", *ALLOW, "-c", "7")
    assert proc.returncode == 2
    assert b"--max-sockets 7" in proc.stderr
    assert len(proc.stderr.decode().strip().splitlines()) == 1


def test_blocked_target_sends_nothing() -> None:
    with serve(echo) as server:
        proc = run_cli("bench", server.address, "-n", "5")
        time.sleep(0.1)
        assert server.connections == []
    assert proc.returncode == 3
    assert b"--allow" in proc.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_prints_the_summary_so_far_then_exits_130(backend: str) -> None:
    with serve(echo) as server:
        proc = subprocess.Popen([*tcpcli_command(), "bench", server.address, *ALLOW,
                                 "--duration", "30", "--rate", "50"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "TCPCLI_BACKEND": backend})
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    text = out.decode()
    assert "(interrupted)" in text
    assert "connect     min=" in text


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_live_sockets_never_exceed_the_cap() -> None:
    """-c 12 under the Workers cap of 6: count open client sockets at every dial."""
    from tcpcli.core.connect import SystemConnector
    from tcpcli.core.invocation import Invocation
    from tcpcli.engines.bench import Bench, BenchConfig

    opened: list[socket.socket] = []
    peak = 0

    class Counting(SystemConnector):
        async def connect_tcp(self, host: Any, port: int, *,
                              local_address: str | None = None) -> Any:
            nonlocal peak
            live = sum(1 for sock in opened if sock.fileno() != -1)
            peak = max(peak, live + 1)
            stream = await super().connect_tcp(host, port, local_address=local_address)
            opened.append(stream.extra(anyio.abc.SocketAttribute.raw_socket))
            return stream

    with serve(delayed_echo(0.01)) as server:
        invocation = Invocation(policy="open", max_sockets=6, connector=Counting())
        async with invocation:
            result = await Bench(BenchConfig(server.address, mode="rr", payload=b"x",
                                             fresh=True, count=60, concurrency=12),
                                 invocation).run()
    assert result.samples == 60
    assert peak == 6
    assert invocation.slots.peak == 6 and invocation.slots.live == 0


def test_processes_share_one_plan_and_report_one_distribution() -> None:
    with serve(echo) as server:
        events, proc = bench_events(server.address, *ALLOW, "-n", "200", "-c", "4",
                                    "--max-sockets", "4", "--processes", "2")
    assert proc.returncode == 0, proc.stderr
    start = next(e for e in events if e["event"] == "bench_start")
    summary = next(e for e in events if e["event"] == "bench_summary")
    assert start["processes"] == 2
    assert summary["samples"] == summary["distributions"]["connect"]["count"] == 200
    assert summary["errors"] == {} and 2 <= summary["peak_sockets"] <= 4
    assert summary["kernel"]["connections"] == 200  # merged across the processes
    assert "samples     200 ok, 0 errors" in proc.stdout.decode()


@pytest.mark.parametrize(("args", "message"), [
    (("-c", "2", "--processes", "3"), b"--processes 3 needs at least one of -c 2"),
    (("-n", "2", "--processes", "3", "-c", "4", "--max-sockets", "4"), b"of -n 2"),
    (("--processes", "two"), b"'two' is not a number of processes"),
    (("-m", "throughput", "--processes", "2"), b"--processes needs --mode connect"),
])
def test_processes_that_cannot_share_the_plan_are_a_usage_error(
        args: tuple[str, ...], message: bytes) -> None:
    proc = run_cli("bench", "127.0.0.1:9", *ALLOW, *args)
    assert proc.returncode == 2
    assert message in proc.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_stops_every_process_and_reports_what_they_measured(backend: str) -> None:
    """As from a terminal: SIGINT reaches the whole process group, children included."""
    with serve(echo) as server:
        proc = subprocess.Popen([*tcpcli_command(), "bench", server.address, *ALLOW,
                                 "--duration", "30", "--rate", "100", "-c", "2",
                                 "--processes", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True,
                                env={**os.environ, "TCPCLI_BACKEND": backend})
        time.sleep(2.0)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        served = len(server.connections)
        time.sleep(0.5)
        assert len(server.connections) == served  # no child dials on
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    text = out.decode()
    assert "(interrupted)" in text
    samples = int(next(line for line in text.splitlines()
                       if line.startswith("samples")).split()[1])
    assert 0 < samples <= served


def test_pooling_compares_a_kept_connection_with_a_fresh_one(
        server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    # Over TLS a fresh connection pays a handshake before each request: the saving of a
    # kept one is that handshake, and both arms ran the same number of requests.
    with serve(echo, ssl_context=server_ssl_context) as server:
        events, proc = bench_events(server.address, *ALLOW, "-m", "rr", "--send", "ping",
                                    "--tls", "--ca-file", ca_file, "--pooling", "-n", "60",
                                    "-c", "2")
    assert proc.returncode == 0, proc.stderr
    pooling = next(e for e in events if e["event"] == "bench_pooling")
    assert pooling["rounds"] == 6
    kept, fresh = pooling["kept"], pooling["fresh"]
    assert kept["samples"] == fresh["samples"] == 60
    assert set(kept["distributions"]) == {"rr"}
    assert {"request", "rr", "connect", "tls"} <= set(fresh["distributions"])
    assert pooling["saving_ms"]["p50"] > 0
    report = proc.stdout.decode()
    for expected in ("pooling: a kept connection vs a fresh one per request",
                     "kept        p50=", "fresh       p50=", "saving      p50=",
                     "fresh       each request is connect p50="):
        assert expected in report, report


@pytest.mark.parametrize(("args", "message"), [
    (["--pooling"], "--pooling needs --mode rr"),
    (["-m", "rr", "--send", "x", "--pooling", "--fresh"], "--fresh does not go with it"),
])
def test_pooling_usage_errors(args: list[str], message: str) -> None:
    proc = run_cli("bench", "127.0.0.1:9", *ALLOW, *args)
    assert proc.returncode == 2
    assert message in proc.stderr.decode()


def test_expect_gates_on_the_distribution_and_the_errors() -> None:
    with serve(echo) as server:
        proc = run_cli("bench", server.address, *ALLOW, "-n", "50", "--expect", "p99<10s",
                       "--expect", "errors=0", "--expect", "rate>0", "--expect", "p999<1us")
    assert proc.returncode == 9, proc.stderr
    out = proc.stdout.decode().splitlines()
    checks = [line for line in out if line.startswith("check ")]
    assert [line.split(":")[0] for line in checks] == [
        "check p99<10s", "check errors=0", "check rate>0", "check p999<1us"]
    assert [line.split(": ")[1].split(" ")[0] for line in checks] == ["ok", "ok", "ok",
                                                                       "FAILED"]
    with serve(echo) as server:
        code, summary, _ = bench_json(server.address, *ALLOW, "-n", "20", "--expect",
                                      "p50<10s", "--expect", "loss=0")
    assert code == 0 and summary["samples"] == 20


def test_expect_counts_errors_as_loss() -> None:
    with serve(echo) as server:
        address = server.address
    events, proc = bench_events(address, *ALLOW, "-n", "10", "--expect", "loss<50%")
    assert proc.returncode == 9
    check = next(e for e in events if e["event"] == "check")
    assert (check["check"], check["passed"], check["found"]) == ("loss<50%", False, "100 %")


def test_the_old_expect_text_still_ends_the_reply_with_a_warning() -> None:
    with serve(echo) as server:
        code, summary, _ = bench_json(server.address, *ALLOW, "--mode", "rr", "--send",
                                      "PING\\r\\n", "--expect", "+PONG", "-n", "1",
                                      "--timeout", "0.5")
    # An echo never says +PONG: the reply marker is waited for (and times out), as before.
    assert code == 6 and summary["errors"] == {"timeout": 1}
    with serve(echo) as server:
        proc = run_cli("bench", server.address, *ALLOW, "--mode", "rr", "--send",
                       "PING\\r\\n", "--expect", "\\r\\n", "-n", "5")
    assert proc.returncode == 0, proc.stderr
    assert b"warning: --expect TEXT (the end of the reply) is now --reply TEXT" in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--expect", "p99<5mss"], b"unknown unit 'mss'"),
    (["--expect", "banner~x"], b"bench does not measure banner"),
    (["-m", "throughput", "--expect", "p99<5ms"], b"--expect checks latency distributions"),
    (["--expect", "+PONG"], b"'+PONG'"),  # not rr: no reply to wait for, so not a check
])
def test_expect_usage_errors(args: list[str], message: bytes) -> None:
    proc = run_cli("bench", "127.0.0.1:9", *ALLOW, *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and b"Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "said"), [
    (("--pg-user", "app"), "--pg-user and --pg-database need --protocol postgres"),
    (("--protocol", "postgres", "-m", "rr", "--reply", "Z"), "knows where a reply ends"),
    (("--protocol", "postgres", "-m", "throughput"), "goes with --mode connect or rr"),
])
def test_protocol_postgres_usage_errors(args: tuple[str, ...], said: str) -> None:
    proc = run_cli("bench", "127.0.0.1:5432", *ALLOW, *args)
    assert proc.returncode == 2 and said in proc.stderr.decode(), proc.stderr
    assert len(proc.stderr.decode().strip().splitlines()) == 1
