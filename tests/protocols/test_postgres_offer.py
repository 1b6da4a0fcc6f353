"""PostgreSQL has no capability list: its one-byte answer to SSLRequest is the offer.

Found against a real PostgreSQL 15: the report said "starttls offered: unknown" after a
successful upgrade, though an ``N`` already said "no".
"""

from __future__ import annotations

import pytest

from tcpcli.protocols import NEED_DATA, ReadyForTls, Send, StartTlsRefusedError, get_dialogue


def answer(byte: bytes) -> tuple[object, bool | None]:
    dialogue = get_dialogue("postgres")
    assert isinstance(dialogue.next_event(), Send)
    assert dialogue.next_event() is NEED_DATA
    dialogue.receive_data(byte)
    try:
        event: object = dialogue.next_event()
    except StartTlsRefusedError as exc:
        event = exc
    return event, dialogue.report.starttls_offered


def test_s_is_an_offer() -> None:
    event, offered = answer(b"S")
    assert isinstance(event, ReadyForTls)
    assert offered is True


@pytest.mark.parametrize("byte", [b"N", b"E"])
def test_n_and_e_are_not(byte: bytes) -> None:
    event, offered = answer(byte)
    assert isinstance(event, StartTlsRefusedError)
    assert offered is False
