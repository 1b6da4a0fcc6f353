"""``bench --protocol postgres`` against a real PostgreSQL: a session opened on every
connection (SSLRequest and TLS, start-up, SCRAM-SHA-256 where the server asks for it), a
simple query timed on it, and ``--pooling`` showing what a kept session saves, as
Hyperdrive's pool does. The password travels in PGPASSWORD only."""

from __future__ import annotations

import json

import pytest

from tests.realservers.conftest import POSTGRES_PASSWORD, RealServer, ServerFiles
from tests.support.cli import run_cli

pytestmark = pytest.mark.timeout(120)

ALLOW = ("--allow", "127.0.0.1")


def bench(server: RealServer, *args: str, password: str | None = None,
          ) -> tuple[int, list[dict[str, object]], str]:
    # (run_cli adds these to this process's environment: an empty PGPASSWORD is none)
    env = {"PGPASSWORD": password or "", "PGUSER": "", "PGDATABASE": ""}
    proc = run_cli("bench", f"127.0.0.1:{server.port()}", *ALLOW, "--protocol", "postgres",
                   "--pg-user", "postgres", "--json", *args, env=env)
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    return proc.returncode, events, proc.stderr.decode()


def test_pooling_shows_what_a_kept_session_saves(postgres_server: RealServer,
                                                 server_files: ServerFiles) -> None:
    code, events, err = bench(postgres_server, "-m", "rr", "--pooling", "-n", "60", "--tls",
                              "--ca-file", str(server_files.ca), "--sni", "localhost")
    assert code == 0, err
    pooling = events[-1]
    assert pooling["event"] == "bench_pooling"
    fresh, kept = pooling["fresh"], pooling["kept"]
    assert fresh["samples"] == kept["samples"] == 60, pooling
    parts = fresh["distributions"]
    assert {"request", "rr", "connect", "tls", "startup"} <= set(parts)
    # A fresh session pays the handshake and the start-up on every request; a kept one
    # only the query: the saving is at least the start-up's median.
    saving = pooling["saving_ms"]["p50"]
    assert saving > parts["startup"]["p50_ms"] > 0
    assert kept["distributions"]["rr"]["p50_ms"] < parts["request"]["p50_ms"]
    text = run_cli("bench", f"127.0.0.1:{postgres_server.port()}", *ALLOW, "--protocol",
                   "postgres", "--pg-user", "postgres", "-m", "rr", "--pooling", "-n", "12",
                   env={"PGPASSWORD": ""}).stdout.decode()
    assert "mode        rr postgres pooling: a kept connection vs a fresh one" in text
    assert "fresh       each request is connect p50=" in text and ", start-up p50=" in text


def test_scram_authentication_and_its_refusal(postgres_scram_server: RealServer) -> None:
    code, events, err = bench(postgres_scram_server, "-m", "rr", "--fresh", "-n", "10",
                              "--send", "SELECT 1", password=POSTGRES_PASSWORD)
    assert code == 0, err
    summary = events[-1]
    assert summary["samples"] == 10 and summary["errors"] == {}
    assert summary["distributions"]["startup"]["count"] == 10
    code, events, err = bench(postgres_scram_server, "-n", "3", password="wrong")
    summary = events[-1]
    assert code == 8 and summary["samples"] == 0, (code, err)
    assert summary["errors"] == {"protocol": 3}
    # Before TLS the server's words are not shown, only its SQLSTATE (28P01).
    said = summary["error_examples"]["protocol"]
    assert "SQLSTATE 28P01" in said and "authentication failed" not in said
    code, events, err = bench(postgres_scram_server, "-n", "1")
    assert code == 8 and "set PGPASSWORD" in events[-1]["error_examples"]["protocol"]


def test_a_failing_query_is_an_error_not_a_sample(postgres_server: RealServer) -> None:
    code, events, _ = bench(postgres_server, "-m", "rr", "-n", "5",
                            "--send", "SELECT * FROM no_such_table")
    summary = events[-1]
    assert summary["samples"] == 0 and summary["errors"] == {"protocol": 5}, summary
    assert code == 8 and "SQLSTATE 42P01" in summary["error_examples"]["protocol"]
