"""A plaintext ``connect`` runs without an event loop when it can (start-up: see
``tcpcli.core.blocking``) and on anyio otherwise. To the user they are one command: each
conversation here runs both ways and must give the same bytes, exit code, messages, JSON
events and waterfall phases (times aside)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.peers import echo, recv_all, reset, serve
from tests.support.two_paths import (
    PATHS,
    REPO,
    Run,
    assert_same,
    both,
    command_on,
    environment,
    run_path,
)


def events(text: bytes) -> list[tuple[str, list[str]]]:
    """Each JSON event's type and field names, in order."""
    found = []
    for line in text.decode().splitlines():
        event = json.loads(line)
        found.append((event["event"], sorted(event)))
    return found


def greeter_then_close(conn: socket.socket) -> None:
    conn.sendall(b"220 hello\r\n")
    conn.close()


def test_an_echo_round_trip_is_the_same_both_ways() -> None:
    with serve(echo) as server:
        runs = both("connect", server.address, "--allow", "127.0.0.1", stdin=b"ping\n" * 1000)
    assert runs[0].returncode == 0 and runs[0].stdout == b"ping\n" * 1000
    assert_same(*runs)


def test_the_peer_closing_first_is_told_the_same_both_ways() -> None:
    with serve(greeter_then_close) as server:
        read_end, write_end = os.pipe()  # stdin stays open: the peer closes first
        try:
            runs = (run_path("no-loop", "connect", server.address, "--allow", "127.0.0.1",
                             stdin=read_end),
                    run_path("event-loop", "connect", server.address, "--allow", "127.0.0.1",
                             stdin=read_end))
        finally:
            os.close(read_end)
            os.close(write_end)
    assert runs[0].stdout == b"220 hello\r\n"
    assert b"peer closed the connection" in runs[0].stderr
    assert_same(*runs)


def half_open_peer(conn: socket.socket) -> None:
    conn.sendall(b"first\n")
    conn.shutdown(socket.SHUT_WR)  # FIN, and keep reading
    data = recv_all(conn)
    conn.close()
    assert data == b"after the peer's FIN\n"


def after_the_peers_fin(path: str, address: str, data: bytes, *options: str) -> Run:
    """``connect --half-open OPTIONS`` whose stdin sends ``data`` and ends only once the
    run has said the peer closed: which side closed first is then the same on every run."""
    proc = subprocess.Popen(command_on(path, "connect", address, "--allow", "127.0.0.1",
                                       "--half-open", *options),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=environment(), cwd=REPO)
    assert proc.stdin is not None and proc.stderr is not None
    said = b""
    while b"peer closed the connection" not in said:
        line = proc.stderr.readline()
        assert line, said
        said += line
    proc.stdin.write(data)
    proc.stdin.close()
    proc.stdin = None  # (communicate() must not write to, or close, it again)
    out, rest = proc.communicate(timeout=30)
    return Run(proc.args, proc.returncode, out, said + rest)


def test_half_open_keeps_sending_after_the_peers_fin_both_ways() -> None:
    runs = []
    for path in PATHS:
        with serve(half_open_peer) as server:
            runs.append(after_the_peers_fin(path, server.address, b"after the peer's FIN\n",
                                            "-v"))
    assert runs[0].returncode == 0 and runs[0].stdout == b"first\n"
    assert b"the peer closed first" in runs[0].stderr
    assert_same(*runs)


def silent(conn: socket.socket) -> None:
    time.sleep(1.5)
    conn.close()


def test_the_idle_timeout_ends_both_ways_with_exit_6() -> None:
    with serve(silent) as server:
        read_end, write_end = os.pipe()
        try:
            runs = tuple(run_path(path, "connect", server.address, "--allow", "127.0.0.1",
                                  "--idle-timeout", "0.3", stdin=read_end) for path in PATHS)
        finally:
            os.close(read_end)
            os.close(write_end)
    assert runs[0].returncode == 6
    assert b"idle timeout" in runs[0].stderr
    assert_same(*runs)


def test_a_reset_is_the_same_error_both_ways() -> None:
    def greet_then_reset(conn: socket.socket) -> None:
        conn.sendall(b"bye\n")
        time.sleep(0.2)
        reset(conn)

    with serve(greet_then_reset) as server:
        read_end, write_end = os.pipe()
        try:
            runs = tuple(run_path(path, "connect", server.address, "--allow", "127.0.0.1",
                                  stdin=read_end) for path in PATHS)
        finally:
            os.close(read_end)
            os.close(write_end)
    assert runs[0].returncode != 0 and b"reset" in runs[0].stderr
    assert_same(*runs)


def test_a_refused_connect_is_the_same_error_both_ways() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: refused
        runs = both("connect", f"127.0.0.1:{port}", "--allow", "127.0.0.1")
    assert runs[0].returncode == 5 and b"refused" in runs[0].stderr
    assert_same(*runs)


def test_a_policy_refusal_never_dials_either_way() -> None:
    runs = both("connect", "127.0.0.1:9")
    assert runs[0].returncode != 0 and b"--allow" in runs[0].stderr
    assert_same(*runs)


@pytest.mark.parametrize("source", ["--send", "--send-file", "stdin-file"])
def test_crlf_transcript_and_files_are_the_same_both_ways(source: str, tmp_path: Path) -> None:
    payload = b"line one\nline two\r\nthree"
    (tmp_path / "payload").write_bytes(payload)
    transcripts = []
    outputs = []
    for path in PATHS:
        got: list[bytes] = []

        def capture(conn: socket.socket, got: list[bytes] = got) -> None:
            got.append(recv_all(conn))
            conn.sendall(b"ok\n")

        transcript = tmp_path / f"{path}.log"
        with serve(capture) as server:
            args = ["connect", server.address, "--allow", "127.0.0.1", "--crlf",
                    "--transcript", str(transcript), "--transcript-format", "text"]
            if source == "--send":
                proc = run_path(path, *args, "--send", r"line one\nline two\r\nthree")
            elif source == "--send-file":
                proc = run_path(path, *args, "--send-file", str(tmp_path / "payload"))
            else:
                with open(tmp_path / "payload", "rb") as stdin:
                    proc = run_path(path, *args, stdin=stdin.fileno())
        assert proc.returncode == 0, proc.stderr
        assert got == [b"line one\r\nline two\r\nthree"]
        transcripts.append(re.sub(r"\[ *[\d.]+ ms\]", "[T]", transcript.read_text()))
        outputs.append(proc)
    assert transcripts[0] == transcripts[1]
    assert_same(*outputs)


def test_the_json_events_and_waterfall_phases_are_the_same_both_ways(tmp_path: Path) -> None:
    streams: list[list[tuple[str, list[str]]]] = []
    phases: list[list[str]] = []
    for path in PATHS:
        events_file = tmp_path / f"{path}.jsonl"
        with serve(echo) as server:
            proc = run_path(path, "connect", server.address, "--allow", "127.0.0.1", "-v",
                            "--events", str(events_file), stdin=b"hello\n")
        assert proc.returncode == 0, proc.stderr
        streams.append(events(events_file.read_bytes()))
        timing = [json.loads(line) for line in events_file.read_text().splitlines()
                  if json.loads(line)["event"] == "timing"]
        phases.append([row["phase"] for row in timing[0]["rows"]])
    assert streams[0] == streams[1]
    assert "connect" in phases[0] and "first-byte" in phases[0] and "close" in phases[0]
    assert phases[0] == phases[1]


def test_a_hosts_file_name_runs_without_the_loop_and_a_dns_name_with_it() -> None:
    # "localhost" is in every hosts file; the loop-free path resolves it from there and
    # records the same resolve phase as the loop (the -v line names the hosts file).
    with serve(echo, host="127.0.0.1") as server:
        port = server.address.rsplit(":", 1)[1]
        runs = both("connect", f"localhost:{port}", "--allow", "localhost", "-4", "-v",
                    stdin=b"hi\n")
    assert runs[0].returncode == 0 and runs[0].stdout == b"hi\n"
    assert b"resolve" in runs[0].stderr and b"hosts" in runs[0].stderr
    assert_same(*runs)



def test_half_open_with_an_idle_timeout_ends_when_both_directions_have(tmp_path: Path) -> None:
    # The idle watch must not outlive the conversation: both ways end at once, exit 0.
    runs = []
    for path in PATHS:
        with serve(half_open_peer) as server:
            started = time.monotonic()
            runs.append(after_the_peers_fin(path, server.address, b"after the peer's FIN\n",
                                            "--idle-timeout", "5"))
            assert time.monotonic() - started < 4, path
    assert runs[0].returncode == 0 and runs[0].stdout == b"first\n", runs[0].stderr
    assert_same(*runs)
