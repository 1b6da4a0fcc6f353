"""Sans-IO protocol logic: STARTTLS dialogues, auto-detection, service identification.

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

Service identification probes (``make_probe("redis")``) are driven the same way, and
end with :class:`~tcpcli.protocols.service.Finished` instead of raising.

Errors (:mod:`tcpcli.protocols.errors`): :class:`StartTlsUnavailableError` (not offered,
refused, session refused) and :class:`RemoteProtocolError` (malformed, oversized,
injected) — both :class:`ProtocolError`, never a plaintext fallback. The core turns them
into its own ``tcpcli.core.errors.ProtocolError`` family at its boundary.

Names are imported lazily, as in ``tcpcli/__init__.py``: ``tcpcli.core.errors`` imports
``tcpcli.protocols.errors`` and must not pay for every dialogue on the way.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> module that defines it. One place: __all__ is built from it.
_EXPORTS: dict[str, str] = {
    "Confidence": "tcpcli.protocols.banner",
    "How": "tcpcli.protocols.banner",
    "ServiceGuess": "tcpcli.protocols.banner",
    "http_head_probe": "tcpcli.protocols.banner",
    "identify": "tcpcli.protocols.banner",
    "mqtt_connect_probe": "tcpcli.protocols.banner",
    "mqtt_disconnect": "tcpcli.protocols.banner",
    "probes_for_silent_service": "tcpcli.protocols.banner",
    "wants_more": "tcpcli.protocols.banner",
    "Capabilities": "tcpcli.protocols.base",
    "Dialogue": "tcpcli.protocols.base",
    "DialogueReport": "tcpcli.protocols.base",
    "Done": "tcpcli.protocols.base",
    "Event": "tcpcli.protocols.base",
    "Greeting": "tcpcli.protocols.base",
    "NEED_DATA": "tcpcli.protocols.base",
    "NeedData": "tcpcli.protocols.base",
    "ReadyForTls": "tcpcli.protocols.base",
    "Send": "tcpcli.protocols.base",
    "State": "tcpcli.protocols.base",
    "LimitExceededError": "tcpcli.protocols.errors",
    "LocalProtocolError": "tcpcli.protocols.errors",
    "ProtocolError": "tcpcli.protocols.errors",
    "RemoteProtocolError": "tcpcli.protocols.errors",
    "ResponseInjectionError": "tcpcli.protocols.errors",
    "SessionRefusedError": "tcpcli.protocols.errors",
    "StartTlsNotOfferedError": "tcpcli.protocols.errors",
    "StartTlsRefusedError": "tcpcli.protocols.errors",
    "StartTlsUnavailableError": "tcpcli.protocols.errors",
    "Finished": "tcpcli.protocols.service",
    "ServiceProbe": "tcpcli.protocols.service",
    "client_first_probes": "tcpcli.protocols.service",
    "make_probe": "tcpcli.protocols.service",
    "DIALOGUES": "tcpcli.protocols.registry",
    "Detection": "tcpcli.protocols.registry",
    "auto_detect": "tcpcli.protocols.registry",
    "detect_by_greeting": "tcpcli.protocols.registry",
    "detect_by_port": "tcpcli.protocols.registry",
    "get_dialogue": "tcpcli.protocols.registry",
    "TlsReply": "tcpcli.protocols.tlsrecord",
    "client_hello": "tcpcli.protocols.tlsrecord",
    "parse_tls_reply": "tcpcli.protocols.tlsrecord",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tcpcli.protocols' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from tcpcli.protocols.banner import (
        Confidence as Confidence,
        How as How,
        ServiceGuess as ServiceGuess,
        http_head_probe as http_head_probe,
        identify as identify,
        mqtt_connect_probe as mqtt_connect_probe,
        mqtt_disconnect as mqtt_disconnect,
        probes_for_silent_service as probes_for_silent_service,
        wants_more as wants_more,
    )
    from tcpcli.protocols.base import (
        NEED_DATA as NEED_DATA,
        Capabilities as Capabilities,
        Dialogue as Dialogue,
        DialogueReport as DialogueReport,
        Done as Done,
        Event as Event,
        Greeting as Greeting,
        NeedData as NeedData,
        ReadyForTls as ReadyForTls,
        Send as Send,
        State as State,
    )
    from tcpcli.protocols.errors import (
        LimitExceededError as LimitExceededError,
        LocalProtocolError as LocalProtocolError,
        ProtocolError as ProtocolError,
        RemoteProtocolError as RemoteProtocolError,
        ResponseInjectionError as ResponseInjectionError,
        SessionRefusedError as SessionRefusedError,
        StartTlsNotOfferedError as StartTlsNotOfferedError,
        StartTlsRefusedError as StartTlsRefusedError,
        StartTlsUnavailableError as StartTlsUnavailableError,
    )
    from tcpcli.protocols.registry import (
        DIALOGUES as DIALOGUES,
        Detection as Detection,
        auto_detect as auto_detect,
        detect_by_greeting as detect_by_greeting,
        detect_by_port as detect_by_port,
        get_dialogue as get_dialogue,
    )
    from tcpcli.protocols.service import (
        Finished as Finished,
        ServiceProbe as ServiceProbe,
        client_first_probes as client_first_probes,
        make_probe as make_probe,
    )
    from tcpcli.protocols.tlsrecord import (
        TlsReply as TlsReply,
        client_hello as client_hello,
        parse_tls_reply as parse_tls_reply,
    )
