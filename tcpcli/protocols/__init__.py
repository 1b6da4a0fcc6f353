"""Sans-IO protocol logic: STARTTLS dialogues, auto-detection and banner identification.

This package contains no networking code at all (a test walks its imports: no anyio,
socket, ssl, dns, asyncio, trio). Bytes go in, events and bytes-to-send come out; the
core owns the socket, the TLS layer and the clock. A driver loop::

    dialogue = get_dialogue("smtp", ehlo_name="client.example.org")
    while True:
        event = dialogue.next_event()
        if event is NEED_DATA:
            dialogue.receive_data(await stream.receive_some())   # b"" on EOF
        elif isinstance(event, Send):
            await stream.send(event.data)
        elif isinstance(event, ReadyForTls):
            stream = await stream.start_tls()
            dialogue.tls_established()
        elif isinstance(event, Done):
            break
        # Greeting / Capabilities: report and time them; errors are raised

Errors: :class:`StartTlsUnavailableError` (not offered, refused, session refused) and
:class:`~tcpcli.core.errors.RemoteProtocolError` (malformed, oversized, injected) —
both :class:`~tcpcli.core.errors.ProtocolError`, never a plaintext fallback.
"""

from __future__ import annotations

from tcpcli.core.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from tcpcli.protocols.banner import (
    Confidence,
    ServiceGuess,
    http_head_probe,
    identify,
    mqtt_connect_probe,
    mqtt_disconnect,
    probes_for_silent_service,
    wants_more,
)
from tcpcli.protocols.base import (
    NEED_DATA,
    Capabilities,
    Dialogue,
    DialogueReport,
    Done,
    Event,
    Greeting,
    LimitExceededError,
    NeedData,
    ReadyForTls,
    ResponseInjectionError,
    Send,
    SessionRefusedError,
    StartTlsNotOfferedError,
    StartTlsRefusedError,
    StartTlsUnavailableError,
    State,
)
from tcpcli.protocols.registry import (
    DIALOGUES,
    Detection,
    auto_detect,
    detect_by_greeting,
    detect_by_port,
    get_dialogue,
)
from tcpcli.protocols.tlsrecord import TlsReply, client_hello, parse_tls_reply

__all__ = [
    "DIALOGUES",
    "NEED_DATA",
    "Capabilities",
    "Confidence",
    "Detection",
    "Dialogue",
    "DialogueReport",
    "Done",
    "Event",
    "Greeting",
    "LimitExceededError",
    "LocalProtocolError",
    "NeedData",
    "ProtocolError",
    "ReadyForTls",
    "RemoteProtocolError",
    "ResponseInjectionError",
    "Send",
    "ServiceGuess",
    "SessionRefusedError",
    "StartTlsNotOfferedError",
    "StartTlsRefusedError",
    "StartTlsUnavailableError",
    "State",
    "TlsReply",
    "auto_detect",
    "client_hello",
    "detect_by_greeting",
    "detect_by_port",
    "get_dialogue",
    "http_head_probe",
    "identify",
    "mqtt_connect_probe",
    "mqtt_disconnect",
    "parse_tls_reply",
    "probes_for_silent_service",
    "wants_more",
]
