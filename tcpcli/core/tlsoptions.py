"""TLS options and pin parsing: what a socket needs to *describe* TLS, without the cost.

Kept apart from ``tls`` so that plain-TCP runs (connect without --tls, probe, bench) never
import cryptography and certifi: start-up time is a tested figure.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Literal, get_args

from tcpcli.core.errors import SocketOptionError
from tcpcli.record import Record

TLSVersionName = Literal["1.0", "1.1", "1.2", "1.3"]

#: Oldest first (ssl's TLSVersion values are in :mod:`tcpcli.core.tlscontext`, which needs
#: ssl anyway: describing TLS here does not load it).
_VERSIONS: tuple[TLSVersionName, ...] = get_args(TLSVersionName)

class TLSOptions(Record, frozen=True):
    """How to speak TLS to one destination. Frozen and hashable: contexts are cached by it.

    ``server_name`` overrides the name used for SNI and verification; ``insecure`` still
    verifies and reports the verdict but continues; ``pins`` are SPKI SHA-256 pins
    (``sha256/<base64>``, ``sha256//<base64>``, bare base64 or hex): one must match a
    certificate in the chain; a match of the server's own key is trusted on its own, as ssh
    trusts a known host key, while a CA's key is trusted only through a chain that
    verifies (see ``verify_in_handshake``);
    ``keylog_file`` defaults to ``$SSLKEYLOGFILE``.
    """

    server_name: str | None = None
    send_sni: bool = True
    alpn: tuple[str, ...] = ()
    min_version: TLSVersionName | None = None
    max_version: TLSVersionName | None = None
    ca_file: str | None = None
    system_store: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    pins: tuple[str, ...] = ()
    keylog_file: str | None = None

    def __post_init__(self) -> None:
        for label, version in (("minimum", self.min_version), ("maximum", self.max_version)):
            if version is not None and version not in _VERSIONS:
                raise SocketOptionError(
                    f"unknown {label} TLS version {version!r}; use one of "
                    + ", ".join(get_args(TLSVersionName))
                )
        if (self.min_version is not None and self.max_version is not None
                and _VERSIONS.index(self.min_version) > _VERSIONS.index(self.max_version)):
            raise SocketOptionError(
                f"the minimum TLS version {self.min_version} is above the maximum "
                f"{self.max_version}"
            )
        for protocol in self.alpn:
            if not 0 < len(protocol.encode()) < 256:
                raise SocketOptionError(f"invalid ALPN protocol name {protocol!r}")
        if self.key_file is not None and self.cert_file is None:
            raise SocketOptionError("a client key file needs a client certificate file")
        _parse_pins(self.pins)

    @property
    def verify_in_handshake(self) -> bool:
        """Whether OpenSSL verifies the chain and name during the handshake and fails it.

        Not with ``insecure``, and not with ``pins``: a pin of the server's own key trusts
        the connection even when the chain does not verify (a self-signed or throwaway
        certificate), so the handshake runs unverified and the verdict is computed
        afterwards, reported, and enforced only when no pin matched the server's key.
        """
        return not self.insecure and not self.pins


def parse_pin(pin: str) -> bytes:
    """The 32-byte SPKI SHA-256 digest of a pin in any accepted spelling."""
    text = pin.strip()
    lowered = text.lower()
    candidates = [text]
    if lowered.startswith("pin-sha256="):
        candidates = [text[len("pin-sha256="):].strip('"')]
    elif lowered.startswith("sha256/"):
        # Ours is "sha256/<b64>", curl's "sha256//<b64>", and base64 may itself start
        # with "/": try both readings.
        rest = text[len("sha256/"):]
        candidates = [rest, rest[1:]] if rest.startswith("/") else [rest]
    import base64  # a pin is rare: plain runs need not load it
    import binascii

    for candidate in candidates:
        compact = candidate.replace(":", "")
        if re.fullmatch(r"[0-9a-fA-F]{64}", compact):
            return bytes.fromhex(compact)
        try:
            digest = base64.b64decode(candidate, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(digest) == 32:
            return digest
    raise SocketOptionError(
        f"invalid public key pin {pin!r}: expected sha256/<base64 of 32 bytes> "
        "or 64 hex digits"
    )


@functools.lru_cache(maxsize=64)
def _parse_pins(pins: tuple[str, ...]) -> frozenset[bytes]:
    digests: set[bytes] = set()
    for pin in pins:
        # curl accepts several pins in one argument separated by ";".
        parts = [part for part in pin.split(";") if part.strip()]
        if not parts:
            raise SocketOptionError("empty public key pin")
        digests.update(parse_pin(part) for part in parts)
    return frozenset(digests)


# --------------------------------------------------------------------------- names


def normalize_name(name: str | None) -> str | None:
    """The name to send and check: brackets and one trailing dot dropped, "" is none."""
    if not name:
        return None
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.endswith(".") and not name.endswith(".."):
        name = name[:-1]
    return name or None


def ip_literal(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address when ``name`` is an IP literal (a %zone ignored): it gets no SNI and
    matches IP SANs only."""
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return None
