"""One error vocabulary: kinds are an enum whose values are the strings JSON shows, a
dialogue's error becomes the core's at the boundary, and an errno means one thing."""

from __future__ import annotations

import errno
import json
import os

import pytest

import tcpcli.core.errors as core_errors
from tcpcli.cli.exit_codes import ExitCode, exit_code_for
from tcpcli.core.errnos import (
    LOST_ERRNOS,
    OUT_OF_SOCKETS_ERRNOS,
    REFUSED_ERRNOS,
    TIMEOUT_ERRNOS,
    UNREACHABLE_ERRNOS,
    ErrnoClass,
    classify_errno,
    errno_class,
    errno_name,
)
from tcpcli.core.errors import ErrorKind, TcpcliError, map_exceptions, translate
from tcpcli.protocols import errors as dialogue_errors

CORE_ERRORS = [value for value in vars(core_errors).values()
               if isinstance(value, type) and issubclass(value, TcpcliError)]


def test_every_error_kind_is_an_error_kind_member() -> None:
    assert len(CORE_ERRORS) > 20
    for error in CORE_ERRORS:
        assert isinstance(error.kind, ErrorKind), error


def test_kinds_read_as_the_same_strings_as_before() -> None:
    # JSON events, bench's error counts and scripts see plain strings.
    assert json.dumps({"kind": core_errors.ConnectRefusedError.kind}) == '{"kind": "refused"}'
    assert f"{core_errors.ResolveTimeoutError.kind}" == "dns-timeout"
    assert core_errors.IdleTimeoutError.kind == "timeout"
    assert {str(kind) for kind in ErrorKind} >= {
        "usage", "blocked", "dns", "refused", "unreachable", "timeout", "tls-verify", "reset",
        "protocol"}


@pytest.mark.parametrize(("kind", "code"), [
    (ErrorKind.BLOCKED, ExitCode.BLOCKED), (ErrorKind.REFUSED, ExitCode.UNREACHABLE),
    (ErrorKind.DNS_TIMEOUT, ExitCode.DNS), (ErrorKind.PROTOCOL, ExitCode.PROTOCOL),
    (ErrorKind.CANCELED, ExitCode.ERROR),
])
def test_exit_codes_follow_the_kind(kind: ErrorKind, code: ExitCode) -> None:
    assert exit_code_for(kind) is code


@pytest.mark.parametrize(("raised", "family"), [
    (dialogue_errors.StartTlsRefusedError("smtp: the server refused STARTTLS (454)"),
     core_errors.ProtocolError),
    (dialogue_errors.LimitExceededError("imap: a line longer than 8192 bytes"),
     core_errors.RemoteProtocolError),
    (dialogue_errors.LocalProtocolError("EHLO name contains a forbidden character"),
     core_errors.LocalProtocolError),
], ids=["refused", "too-large", "local"])
def test_a_dialogue_error_leaves_the_core_as_the_cores(
        raised: dialogue_errors.ProtocolError, family: type[core_errors.ProtocolError]) -> None:
    with pytest.raises(TcpcliError) as caught, map_exceptions():
        raise raised
    error = caught.value
    assert type(error) is family
    assert str(error) == str(raised)
    assert error.kind == "protocol" and exit_code_for(error.kind) == ExitCode.PROTOCOL
    assert getattr(error, "reason", None) == raised.reason
    assert error.__cause__ is raised
    # Still a dialogue error of the same family for code written against the dialogues.
    assert isinstance(error, dialogue_errors.ProtocolError)
    assert isinstance(error, dialogue_errors.RemoteProtocolError) == isinstance(
        raised, dialogue_errors.RemoteProtocolError)


def test_the_cores_protocol_errors_are_left_alone() -> None:
    own = core_errors.RemoteProtocolError("bench: the reply did not match")
    assert translate(own, target=None, port=None, phase="stream") is own
    assert own.reason is None


def test_errno_classes_do_not_overlap() -> None:
    tables = [REFUSED_ERRNOS, UNREACHABLE_ERRNOS, TIMEOUT_ERRNOS, LOST_ERRNOS,
              OUT_OF_SOCKETS_ERRNOS]
    assert sum(map(len, tables)) == len(frozenset().union(*tables))


@pytest.mark.parametrize(("code", "meaning", "reason"), [
    (errno.ECONNREFUSED, ErrnoClass.REFUSED, "refused"),
    (errno.ETIMEDOUT, ErrnoClass.TIMEOUT, "timeout (kernel)"),
    (errno.EHOSTUNREACH, ErrnoClass.UNREACHABLE,
     f"EHOSTUNREACH: {os.strerror(errno.EHOSTUNREACH)}"),
    (errno.ECONNRESET, ErrnoClass.LOST, f"ECONNRESET: {os.strerror(errno.ECONNRESET)}"),
    (errno.EMFILE, ErrnoClass.OUT_OF_SOCKETS, f"EMFILE: {os.strerror(errno.EMFILE)}"),
    (errno.EINVAL, ErrnoClass.OTHER, f"EINVAL: {os.strerror(errno.EINVAL)}"),
])
def test_classify_errno_gives_the_class_and_the_reason_shown(
        code: int, meaning: ErrnoClass, reason: str) -> None:
    verdict = classify_errno(code)
    assert (verdict.errno_class, verdict.reason) == (meaning, reason)


def test_errno_name_falls_back_to_the_number() -> None:
    assert errno_name(errno.EPIPE) == "EPIPE"
    assert errno_name(99999) == "99999"
    assert errno_class(None) is ErrnoClass.OTHER


@pytest.mark.parametrize(("code", "phase", "error"), [
    (errno.ECONNREFUSED, "connect", core_errors.ConnectRefusedError),
    (errno.EPIPE, "connect", core_errors.ConnectionLostError),
    (errno.ETIMEDOUT, "connect", core_errors.ConnectTimeoutError),
    (errno.EHOSTUNREACH, "connect", core_errors.UnreachableError),
    (errno.EMFILE, "connect", core_errors.ConnectError),
    (errno.EHOSTUNREACH, "stream", core_errors.ConnectionLostError),
])
def test_translate_reads_the_same_table(code: int, phase: str,
                                        error: type[TcpcliError]) -> None:
    mapped = translate(OSError(code, os.strerror(code)), target="db.test", port=5432,
                       phase=phase)
    assert type(mapped) is error
