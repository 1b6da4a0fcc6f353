"""The verdict on a TLS peer's certificate: apart from the rest of the report because every
TLS run reaches one, while the report (:mod:`tcpcli.core.tlsreport`, which re-exports this)
is built only when something shows it, and defining its classes is a cost of its own."""

from __future__ import annotations

from tcpcli.record import Record

__all__ = ["Verification"]


class Verification(Record, frozen=True):
    """The verification verdict. ``verify_code``/``reason`` are OpenSSL's when it failed."""

    verified: bool
    verify_code: int | None
    reason: str  # "ok" or the verification message
    hostname_matched: bool | None  # None when there was no name to check
    pin_matched: bool | None  # None when no pins were given
