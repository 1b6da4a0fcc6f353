"""``--protocol auto``: pick by port, confirm (or override) by the greeting."""

from __future__ import annotations

import pytest

from tcpcli.protocols import DIALOGUES, auto_detect, detect_by_greeting, detect_by_port
from tests.protocols.transcript import all_transcripts

TRANSCRIPTS = all_transcripts()
#: Greetings that name no protocol on their own (a bare 220, a 421): the port decides.
AMBIGUOUS = {"smtp-helo-only", "lmtp-dovecot", "lmtp-no-starttls", "ftp-421", "nntp-502"}


@pytest.mark.parametrize(("port", "name"), [
    (25, "smtp"), (587, "smtp"), (24, "lmtp"), (110, "pop3"), (143, "imap"), (21, "ftp"),
    (5222, "xmpp"), (5269, "xmpp-server"), (23, "telnet"), (6667, "irc"), (3306, "mysql"),
    (5432, "postgres"), (119, "nntp"), (4190, "sieve"), (389, "ldap"), (2525, "smtp"),
    (443, None), (465, None), (None, None),
])
def test_by_port(port: int | None, name: str | None) -> None:
    assert detect_by_port(port) == name


def test_every_default_port_maps_back() -> None:
    for name, cls in DIALOGUES.items():
        for port in cls.default_ports:
            assert detect_by_port(port) == name


SERVER_FIRST = [t for t in TRANSCRIPTS
                if DIALOGUES[t.protocol].server_speaks_first and t.turns[0][0] == "S"]


@pytest.mark.parametrize("transcript", SERVER_FIRST, ids=lambda t: t.name)
def test_by_recorded_greeting(transcript: object) -> None:
    from tests.protocols.transcript import Transcript

    assert isinstance(transcript, Transcript)
    greeting = transcript.turns[0][1]
    expected = None if transcript.name in AMBIGUOUS else transcript.protocol
    assert detect_by_greeting(greeting) == expected


def test_by_greeting_others() -> None:
    assert detect_by_greeting(b"") is None
    assert detect_by_greeting(b"SSH-2.0-OpenSSH_9.2p1\r\n") is None
    assert detect_by_greeting(b":irc.example.net NOTICE * :*** Looking up\r\n") == "irc"
    assert detect_by_greeting(b"\xff\xfd\x18") == "telnet"
    assert detect_by_greeting(b"220 host LMTP ready\r\n") == "lmtp"


def test_auto_detect() -> None:
    smtp = b"220 mail.example.com ESMTP Postfix\r\n"
    assert auto_detect(25, smtp).protocol == "smtp"
    assert auto_detect(25, smtp).by == "port+greeting"
    # The greeting wins over the port, and says so.
    moved = auto_detect(2121, b"220 (vsFTPd 3.0.3)\r\n")
    assert (moved.protocol, moved.by) == ("ftp", "greeting")
    assert auto_detect(110, b"* OK IMAP ready\r\n").note.endswith("usually speaks pop3)")
    # Silent servers: the port decides for client-first protocols.
    assert auto_detect(5432, b"") == auto_detect(5432, b"")
    assert (auto_detect(5432, b"").protocol, auto_detect(5432, b"").by) == ("postgres", "port")
    assert auto_detect(389, b"").note.endswith("waits for the client")
    assert auto_detect(24, b"220 mail.example.com Dovecot ready.\r\n").protocol == "lmtp"
    assert auto_detect(8080, b"").protocol is None
    assert auto_detect(None, b"HTTP/1.1 400 Bad Request\r\n").by == "none"
