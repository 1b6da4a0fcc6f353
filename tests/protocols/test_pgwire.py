"""PostgreSQL start-up, authentication and simple query (``protocols.pgwire``), sans-IO:
SCRAM-SHA-256 against RFC 7677's own exchange, md5 against a hand computation, what is
never sent, and where a query's reply ends."""

from __future__ import annotations

import contextlib
import hashlib
import struct

import pytest
from hypothesis import given, settings, strategies as st

from tcpcli.protocols.errors import RemoteProtocolError
from tcpcli.protocols.pgwire import (
    PgError,
    StartupSession,
    _Scram,
    message,
    next_message,
    query_message,
    reply_end,
    startup_message,
)


def auth(code: int, rest: bytes = b"") -> tuple[bytes, bytes]:
    return b"R", struct.pack("!I", code) + rest


def test_scram_sha_256_matches_rfc_7677() -> None:
    scram = _Scram("pencil", nonce="rOprNGfwEbeRWgbNEkqO", user="user")
    assert scram.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = scram.client_final(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                               b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert final == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    scram.verify_server(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    with pytest.raises(PgError, match="does not know the password"):
        scram.verify_server(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")


def test_a_challenge_that_does_not_extend_our_nonce_is_refused() -> None:
    scram = _Scram("pencil", nonce="abc")
    with pytest.raises(PgError, match="does not answer ours"):
        scram.client_final(b"r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


def test_md5_and_the_session_to_ready_for_query() -> None:
    session = StartupSession("alice", "shop", "secret", encrypted=False)
    first = session.first()
    assert first == startup_message("alice", "shop")
    assert b"user\0alice\0database\0shop\0" in first
    answer = session.receive(*auth(5, b"\x01\x02\x03\x04"))
    inner = hashlib.md5(b"secretalice").hexdigest()
    expected = "md5" + hashlib.md5(inner.encode() + b"\x01\x02\x03\x04").hexdigest()
    assert answer == message(b"p", expected.encode() + b"\0")
    assert session.receive(*auth(0)) == b"" and session.authenticated
    assert session.receive(b"S", b"server_version\x0016\x00") == b""
    assert not session.ready
    assert session.receive(b"Z", b"I") == b"" and session.ready


def test_no_password_leaves_in_clear_text_without_tls_and_none_is_invented() -> None:
    plain = StartupSession("alice", "shop", "secret", encrypted=False)
    with pytest.raises(PgError, match="clear text over a connection without TLS"):
        plain.receive(*auth(3))
    over_tls = StartupSession("alice", "shop", "secret", encrypted=True)
    assert over_tls.receive(*auth(3)) == message(b"p", b"secret\0")
    nothing = StartupSession("alice", "shop", None, encrypted=True)
    with pytest.raises(PgError, match="set PGPASSWORD") as failed:
        nothing.receive(*auth(10, b"SCRAM-SHA-256\0\0"))
    assert failed.value.auth


def test_an_error_before_tls_shows_its_code_not_its_text() -> None:
    body = b"SFATAL\0C28P01\0Mpassword authentication failed for user \"alice\"\0\0"
    plain = StartupSession("alice", "shop", "x", encrypted=False)
    with pytest.raises(PgError) as failed:
        plain.receive(b"E", body)
    assert failed.value.sqlstate == "28P01" and failed.value.auth
    assert "password authentication failed" not in str(failed.value)
    over_tls = StartupSession("alice", "shop", "x", encrypted=True)
    with pytest.raises(PgError, match="password authentication failed"):
        over_tls.receive(b"E", body)


def test_a_reply_ends_at_ready_for_query_with_its_error() -> None:
    ok = (message(b"T", b"\0\x01?column?\0" + bytes(18)) + message(b"D", b"\0\x01\0\0\0\x011")
          + message(b"C", b"SELECT 1\0") + message(b"Z", b"I"))
    buffer = bytearray(ok + b"next")
    assert reply_end(bytearray(ok[:-1])) is None
    assert reply_end(buffer) == (len(ok), None)
    failed = message(b"E", b"SERROR\0C42601\0Msyntax error\0\0") + message(b"Z", b"I")
    end = reply_end(bytearray(failed))
    assert end is not None and end[1] is not None and end[1].sqlstate == "42601"
    assert query_message("SELECT 1") == b"Q\0\0\0\x0dSELECT 1\0"


@settings(max_examples=300, deadline=2000)
@given(st.binary(max_size=64))
def test_junk_is_a_protocol_error_or_waits_for_more(junk: bytes) -> None:
    for parse in (lambda b: reply_end(b), lambda b: next_message(b)):
        with contextlib.suppress(RemoteProtocolError):
            parse(bytearray(junk))
