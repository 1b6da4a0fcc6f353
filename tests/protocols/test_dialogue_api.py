"""The dialogue API (h11 style): states, misuse, the registry, the transition tables."""

from __future__ import annotations

import enum

import pytest

from tcpcli.protocols import (
    DIALOGUES,
    NEED_DATA,
    Done,
    Greeting,
    ReadyForTls,
    Send,
    State,
    get_dialogue,
)
from tcpcli.protocols.base import Goal, Outcome, TableDialogue, printable
from tcpcli.protocols.errors import LocalProtocolError

#: openssl s_client -starttls accepts exactly these (openssl 3.x).
OPENSSL_LIST = {"smtp", "pop3", "imap", "ftp", "xmpp", "xmpp-server", "telnet", "irc",
                "mysql", "postgres", "lmtp", "nntp", "sieve", "ldap"}


def test_the_registry_is_openssls_list() -> None:
    assert set(DIALOGUES) == OPENSSL_LIST
    for name, cls in DIALOGUES.items():
        assert cls.name == name and cls.default_ports


def test_what_the_registry_knows_before_importing_is_the_dialogues_own() -> None:
    """Detection reads ports and who speaks first from the registry's table, so that a run
    imports only the dialogue it speaks: the table must say what each class says."""
    from tcpcli.protocols import registry, telnet

    # (The two tables agree: each class the lazy imports know is one entry's.)
    assert sorted(entry.cls for entry in registry._ENTRIES.values()) == sorted(registry._EXPORTS)
    for name, entry in registry._ENTRIES.items():
        cls = DIALOGUES[name]
        assert (entry.default_ports, entry.server_speaks_first) == (
            cls.default_ports, cls.server_speaks_first), name
    assert registry._IAC == telnet.IAC


def test_get_dialogue_names_and_options() -> None:
    assert get_dialogue("PostgreSQL").name == "postgres"
    assert get_dialogue("managesieve").name == "sieve"
    with pytest.raises(LocalProtocolError, match="unknown STARTTLS protocol"):
        get_dialogue("gopher")
    with pytest.raises(LocalProtocolError, match="unexpected keyword"):
        get_dialogue("pop3", ehlo_name="x")
    with pytest.raises(LocalProtocolError):
        get_dialogue("smtp", max_line=8)


def test_a_whole_dialogue_and_its_states() -> None:
    dialogue = get_dialogue("pop3")
    assert dialogue.state is State.PLAINTEXT and dialogue.step == "greeting"
    assert dialogue.next_event() is NEED_DATA
    with pytest.raises(LocalProtocolError):
        dialogue.tls_established()  # no go-ahead yet
    dialogue.receive_data(b"+OK hi\r\n")
    assert dialogue.next_event() == Greeting("hi")
    assert dialogue.next_event() == Send(b"CAPA\r\n", "CAPA")
    assert dialogue.next_event() is NEED_DATA
    dialogue.receive_data(b"+OK\r\nSTLS\r\n.\r\n")
    dialogue.next_event()  # Capabilities
    assert dialogue.next_event() == Send(b"STLS\r\n", "STLS")
    dialogue.receive_data(b"+OK go\r\n")
    assert dialogue.next_event() == ReadyForTls("+OK go")
    assert dialogue.state.value == "upgrade"
    with pytest.raises(LocalProtocolError, match="tls_established"):
        dialogue.next_event()
    dialogue.receive_data(b"")  # EOF while the handshake runs: the handshake will say
    dialogue.tls_established()
    assert dialogue.state.value == "after-tls"
    assert dialogue.next_event() == Send(b"CAPA\r\n", "CAPA")
    dialogue.receive_data(b"+OK\r\nUSER\r\n.\r\n")
    dialogue.next_event()  # Capabilities(after_tls=True)
    assert dialogue.next_event() == Done()
    assert dialogue.next_event() == Done()  # idempotent, like h11's ConnectionClosed
    assert dialogue.state.value == "done"
    with pytest.raises(LocalProtocolError, match="belong to the application"):
        dialogue.receive_data(b"+OK more")
    assert dialogue.report.capabilities_after == ("USER",)


def test_data_after_eof() -> None:
    dialogue = get_dialogue("smtp")
    dialogue.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        dialogue.receive_data(b"220 late\r\n")


def test_printable_escapes_terminal_controls() -> None:
    assert printable(b"evil\x1b[2Jbanner\x07") == "evil\\x1b[2Jbanner\\x07"
    assert printable(b"caf\xc3\xa9 \xff") == "café \ufffd"
    assert printable("x" * 400).endswith("…") and len(printable("x" * 400)) == 300


def _reachable(cls: type[TableDialogue[object]], start: enum.Enum) -> set[enum.Enum]:
    seen: set[enum.Enum] = set()
    todo = [start]
    while todo:
        step = todo.pop()
        if isinstance(step, Goal) or step in seen:
            continue
        seen.add(step)
        todo.extend(target for (s, _), target in cls.TABLE.items() if s is step)
        if step in cls.NO_REPLY:
            todo.append(cls.NO_REPLY[step])
    return seen


@pytest.mark.parametrize("name", sorted(DIALOGUES))
def test_transition_tables(name: str) -> None:
    cls = DIALOGUES[name]
    assert issubclass(cls, TableDialogue)
    steps = type(cls.FIRST)
    for (step, outcome), target in cls.TABLE.items():
        assert isinstance(step, steps) and isinstance(outcome, Outcome)
        assert isinstance(target, steps | Goal)
        assert outcome is not Outcome.WAIT  # WAIT never leaves a step
    before = _reachable(cls, cls.FIRST)
    if name == "ldap":
        before |= _reachable(cls, type(cls.FIRST)["STARTTLS"])
    after = _reachable(cls, cls.AFTER_TLS)
    assert not before & after, "a step is used on both sides of TLS"
    assert before | after == set(steps), "unreachable steps"
    targets = set(cls.TABLE.values()) | set(cls.NO_REPLY.values())
    assert Goal.UPGRADE in targets
    for (step, outcome), target in cls.TABLE.items():
        if step in before and outcome in (Outcome.NO, Outcome.ABSENT, Outcome.CLOSING):
            # Never on in plaintext: a refusal before TLS always ends in a failure goal.
            assert target in (Goal.NOT_OFFERED, Goal.REFUSED, Goal.SESSION_REFUSED), (
                step, outcome, target)
        if step in before:
            assert target is not Goal.DONE, "DONE before TLS would be a plaintext fallback"


def test_public_names_are_pinned() -> None:
    import tcpcli.protocols

    assert sorted(tcpcli.protocols.__all__) == [
        "Capabilities", "Confidence", "DIALOGUES", "Detection", "Dialogue", "DialogueReport",
        "Done", "Event", "Finished", "Greeting", "How", "LimitExceededError",
        "LocalProtocolError", "NEED_DATA", "NeedData", "ProtocolError", "ReadyForTls",
        "RemoteProtocolError", "ResponseInjectionError", "Send", "ServiceGuess",
        "ServiceProbe", "SessionRefusedError", "StartTlsNotOfferedError",
        "StartTlsRefusedError", "StartTlsUnavailableError", "State", "TlsReply",
        "auto_detect", "client_first_probes", "client_hello", "detect_by_greeting",
        "detect_by_port", "get_dialogue", "http_head_probe", "identify", "make_probe",
        "mqtt_connect_probe", "mqtt_disconnect", "parse_tls_reply", "probes_for_silent_service",
        "wants_more",
    ]
    for name in tcpcli.protocols.__all__:
        assert getattr(tcpcli.protocols, name) is not None


def test_the_dialogues_have_one_error_tree_of_their_own() -> None:
    from tcpcli.protocols import (
        LimitExceededError,
        ProtocolError,
        RemoteProtocolError,
        ResponseInjectionError,
        SessionRefusedError,
        StartTlsNotOfferedError,
        StartTlsRefusedError,
        StartTlsUnavailableError,
    )

    for remote in (LimitExceededError, ResponseInjectionError):
        assert issubclass(remote, RemoteProtocolError)
    for unavailable in (StartTlsNotOfferedError, StartTlsRefusedError, SessionRefusedError):
        assert issubclass(unavailable, StartTlsUnavailableError)
        assert not issubclass(unavailable, RemoteProtocolError)  # the peer spoke correctly
    for error in (LimitExceededError, StartTlsUnavailableError):
        assert issubclass(error, ProtocolError)
        # Plain exceptions: the core maps them (tests/unit/test_error_vocabulary.py).
        assert not hasattr(error, "kind")
    reasons = {c.reason for c in (LimitExceededError, ResponseInjectionError,
                                  StartTlsNotOfferedError, StartTlsRefusedError,
                                  SessionRefusedError)}
    assert len(reasons) == 5 and None not in reasons
