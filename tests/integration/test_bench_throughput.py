"""``tcpcli bench --mode throughput`` as a user runs it: a subprocess against real loopback
peers (``tcpcli listen --discard/--chargen/--echo``, or small socket servers that count,
stall or reset), checking the counts against what the peer itself counted."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tcpcli.cli.paramtypes import parse_size
from tests.integration.test_cli_bench import bench_events, free_port
from tests.support.cli import run_cli, tcpcli_command
from tests.support.peers import reset, serve

ALLOW = ("--allow", "127.0.0.1")
THROUGHPUT = ("--mode", "throughput")


class Listener:
    """``tcpcli listen --keep-open --json`` in a subprocess; its events are collected by a
    thread so the peer's own byte counts (``closed`` events) can be compared with ours."""

    def __init__(self, proc: subprocess.Popen[str], address: str) -> None:
        self.proc, self.address = proc, address
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.events.append(json.loads(line))

    def closed(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """The ``closed`` events, once ``count`` connections have closed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            closed = [e for e in self.events if e["event"] == "closed"]
            if len(closed) >= count:
                return closed
            time.sleep(0.02)
        raise AssertionError(f"the listener saw fewer than {count} closes: {self.events}")


@contextmanager
def listening(mode: str) -> Iterator[Listener]:
    proc = subprocess.Popen([*tcpcli_command(), "listen", "127.0.0.1:0", mode, "--keep-open",
                             "--json"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())
        assert first["event"] == "listening"
        yield Listener(proc, first["address"])
    finally:
        proc.kill()
        proc.wait(5)


def throughput(*args: str, backend: str = "asyncio") -> tuple[int, dict[str, Any], str]:
    """Run a throughput bench with --events FILE (so stdout keeps the report): the exit
    code, the summary event, stdout."""
    events, proc = bench_events(*args, *ALLOW, *THROUGHPUT, backend=backend)
    summaries = [e for e in events if e["event"] == "bench_summary"]
    assert summaries, proc.stderr
    assert summaries[0]["mode"] == "throughput"
    return proc.returncode, summaries[0], proc.stdout.decode()


def counting_discard(received: list[int]) -> Any:
    def handler(conn: socket.socket) -> None:
        total = 0
        while data := conn.recv(1 << 20):
            total += len(data)
        received.append(total)
    return handler


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_up_counts_exactly_what_the_discard_peer_received(backend: str) -> None:
    with listening("--discard") as peer:
        code, summary, out = throughput(peer.address, "-c", "3", "-d", "1", backend=backend)
        closed = peer.closed(3)
    assert code == 0, out
    assert summary["errors"] == {} and summary["connected"] == 3
    up = summary["up"]
    assert up["bytes"] > 0
    assert sum(e["bytes_received"] for e in closed) == up["bytes"]  # the peer's own count
    assert "down" not in summary
    assert 0.95 <= summary["elapsed_s"] < 1.5
    assert up["bytes_per_second"] == pytest.approx(up["bytes"] / summary["elapsed_s"],
                                                   rel=1e-3)
    assert up["bits_per_second"] == pytest.approx(8 * up["bytes_per_second"], rel=1e-6)
    spread = up["per_connection_bytes_per_second"]
    assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    assert sum(i["up_bytes"] for i in summary["intervals"]) == up["bytes"]
    assert summary["distributions"]["connect"]["count"] == 3
    lines = out.splitlines()  # piped: one fact per line
    assert lines[1].startswith("mode        throughput up, 3/3 connections, chunk 128 KiB")
    assert any(line.startswith(f"up          {up['bytes']} bytes  ") and "bit/s" in line
               for line in lines)


def test_down_with_bytes_stops_at_exactly_that_many() -> None:
    with listening("--chargen") as peer:
        code, summary, _ = throughput(peer.address, "--direction", "down", "--bytes", "3M",
                                      "-c", "2", "--chunk", "64K", backend="trio")
    assert code == 0
    assert summary["errors"] == {}
    assert summary["down"]["bytes"] == 2 * 3 * 1024 * 1024
    assert summary["bytes_target"] == 3 * 1024 * 1024 and summary["chunk_bytes"] == 65536
    assert "up" not in summary


def test_both_against_echo_counts_each_way_and_shows_intervals_with_v() -> None:
    with listening("--echo") as peer:
        code, summary, out = throughput(peer.address, "--direction", "both", "-c", "2",
                                        "-d", "1.2", "--interval", "0.5", "-v")
        closed = peer.closed(2)
    assert code == 0, out
    up, down = summary["up"]["bytes"], summary["down"]["bytes"]
    assert 0 < down <= up
    assert sum(e["bytes_received"] for e in closed) == up
    assert len(summary["intervals"]) == 3  # 0-0.5, 0.5-1.0 and the last 0.2 s
    assert [sum(i[k] for i in summary["intervals"]) for k in ("up_bytes", "down_bytes")] \
        == [up, down]
    lines = out.splitlines()
    assert sum(line.startswith("interval ") for line in lines) == 3
    assert any(line.startswith("down/conn   min=") for line in lines)


@pytest.mark.parametrize("direction", ["up", "down"])
def test_a_peer_that_resets_mid_transfer_counts_as_reset(direction: str) -> None:
    def reset_after_a_megabyte(conn: socket.socket) -> None:
        if direction == "up":
            got = 0
            while got < 1 << 20 and (data := conn.recv(65536)):
                got += len(data)
        else:
            conn.sendall(b"x" * (1 << 20))
            time.sleep(0.2)
        reset(conn)

    with serve(reset_after_a_megabyte) as server:
        code, summary, out = throughput(server.address, "--direction", direction, "-c", "2",
                                        "-d", "5")
    assert summary["errors"] == {"reset": 2}, out
    assert summary[direction]["bytes"] >= (1 << 20 if direction == "down" else 1)
    assert summary["elapsed_s"] < 4  # every connection failed: the window closed early
    assert code == 0  # bytes were measured; the resets are reported
    assert "errors      reset=2 (connection to 127.0.0.1:" in out


def test_warmup_bytes_are_moved_but_not_counted() -> None:
    received: list[int] = []
    with serve(counting_discard(received)) as server:
        code, summary, out = throughput(server.address, "-c", "1", "--warmup", "1",
                                        "-d", "0.5")
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
    assert code == 0, out
    counted = summary["up"]["bytes"]
    assert summary["warmup_s"] == 1 and 0.45 <= summary["elapsed_s"] < 1
    assert 0 < counted < received[0]  # the peer got the warmup's bytes too
    assert sum(i["up_bytes"] for i in summary["intervals"]) == counted
    assert "after 1 s warmup" in out


def test_tls_handshake_is_outside_the_window(server_ssl_context: ssl.SSLContext,
                                             ca_file: str) -> None:
    received: list[int] = []
    with serve(counting_discard(received), ssl_context=server_ssl_context) as server:
        code, summary, _ = throughput(server.address, "--tls", "--ca-file", ca_file,
                                      "-c", "2", "--bytes", "2M")
        deadline = time.monotonic() + 5
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert code == 0
    assert summary["errors"] == {} and summary["tls"]
    assert summary["up"]["bytes"] == 2 * 2 * 1024 * 1024 == sum(received)
    assert summary["distributions"]["tls"]["count"] == 2
    assert summary["distributions"]["tls"]["min_ms"] > 0


def test_a_silent_peer_times_out_and_exits_6() -> None:
    with serve(lambda conn: conn.recv(1)) as server:
        code, summary, out = throughput(server.address, "--direction", "down", "-c", "2",
                                        "--timeout", "0.6", "-d", "5")
    assert summary["errors"] == {"timeout": 2}
    assert summary["down"]["bytes"] == 0
    assert code == 6, out


def test_refused_exits_5_with_the_errors_counted() -> None:
    code, summary, out = throughput(f"127.0.0.1:{free_port()}", "-d", "1")
    assert summary["errors"] == {"refused": 6} and summary["connected"] == 0
    assert code == 5
    assert "errors      refused=6" in out


def test_ctrl_c_prints_the_summary_so_far_then_exits_130() -> None:
    with listening("--discard") as peer:
        proc = subprocess.Popen([*tcpcli_command(), "bench", peer.address, *ALLOW,
                                 *THROUGHPUT, "-d", "30", "-c", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "NO_COLOR": "1"})
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    lines = out.decode().splitlines()
    window = next(line for line in lines if line.startswith("window "))
    assert "(interrupted)" in window
    measured = float(window.split()[1])
    assert 0.3 < measured < 3
    up = next(line for line in lines if line.startswith("up "))
    assert int(up.split()[1]) > 0


@pytest.mark.parametrize(("argv", "message"), [
    (["-n", "5"], "-n counts latency samples"),
    (["--rate", "10"], "--rate paces latency samples"),
    (["--bytes", "1.5"], "not a whole number of bytes"),
])
def test_options_that_do_not_fit_throughput_are_usage_errors(argv: list[str],
                                                             message: str) -> None:
    proc = run_cli("bench", "127.0.0.1:9", *ALLOW, *THROUGHPUT, *argv)
    assert proc.returncode == 2
    assert message in proc.stderr.decode()


def test_throughput_options_need_the_mode() -> None:
    proc = run_cli("bench", "127.0.0.1:9", *ALLOW, "--bytes", "1M")
    assert proc.returncode == 2
    assert "--bytes needs --mode throughput" in proc.stderr.decode()


def test_sizes() -> None:
    assert [parse_size(t) for t in ("1", "64K", "64k", "1.5M", "2GiB", "10MB", "3kb")] == [
        1, 65536, 65536, 1572864, 2 << 30, 10_000_000, 3000]
    for bad in ("", "0", "1.5", "K", "12Q", "-1M"):
        with pytest.raises(ValueError, match="size|byte"):
            parse_size(bad)
