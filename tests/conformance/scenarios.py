"""The conformance scenarios, written once as data, and the table of deliberate differences.

Each scenario is an address, ``connect()`` options and a list of steps. ``worker.mjs`` runs
the steps with the real ``connect()`` inside workerd, ``library.py`` runs them with tcpcli,
and the two outcome records must be equal — unless the scenario names a row of
:data:`DIFFERENCES`, in which case they must still differ (a stale row fails the suite).

Addresses may name a peer's port as ``{echo}`` (inside a string) or ``"{echo}"`` (a whole
JSON value, for ``SocketAddress.port``); ``peers.py`` defines the peers. JSON has no NaN or
Infinity, so those ports are written ``{"$number": "NaN"}``.

Steps (``within_ms`` bounds how long a promise may take to settle; past it the outcome is
``{"pending": true}`` and the promise is left running, as in JavaScript):

=================  ==========================================================================
``opened``         await ``socket.opened``: ``{resolved: {remoteAddress, localAddress}}`` or
                   ``{rejected: {type, message}}``
``closed``         await ``socket.closed``
``close``          ``socket.close()``
``write``          write these bytes (latin-1 text); ``write-value`` writes a non-bytes value
``write-nowait``   start a write and go on; ``pending-writes`` settles all of them
``close-writer``   ``writer.close()`` — a half-close (FIN)
``read``           read ``bytes`` bytes, or to EOF without ``bytes``: ``{data, eof}`` or
                   ``{data, error}`` or ``{data, timeout}``
``cancel-reader``  ``reader.cancel()`` / ``readable.aclose()``
``second-writer``  ask for a second writer (``second-reader``: reader) while one is held
``release-locks``  ``releaseLock()`` the held reader and writer (what a Worker does before
                   ``startTls()``); nothing to do in Python, whose streams have no locks
``start-tls``      ``startTls()`` → the socket named ``as``; with ``again``, a second call at
                   once (the same tick: nothing awaited in between) → the socket ``again``
``opened-all``     ``Promise.all`` over the ``opened`` of ``sockets``: ``{results: [...]}``
``round-trip-all`` write "x" on each of ``sockets`` and read it back: ``{echoed, rejected}``
``attrs``          ``upgraded`` and ``secureTransport``
``connect``        another socket (``as``, ``address``, ``options``)
``sleep``          wait ``ms``
=================  ==========================================================================

Every step may name the socket it acts on (``socket``, default ``"main"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tcpcli.core.errors import SOCKET_CANCELED

#: Generous bounds: a promise that should settle does so in milliseconds on loopback.
SETTLES = 3000
#: How long to watch a promise that should stay pending.
STAYS_PENDING = 300

Step = dict[str, Any]


@dataclass(frozen=True)
class Difference:
    """A deliberate difference between tcpcli and workerd, and why."""

    title: str
    reason: str


@dataclass(frozen=True)
class Scenario:
    id: str
    topic: str
    address: str | dict[str, Any]
    steps: tuple[Step, ...]
    options: dict[str, Any] = field(default_factory=dict)
    #: How the library side runs beyond the defaults (policy "open", no socket cap):
    #: ``policy``, ``max_sockets``, ``connect_timeout``.
    library: dict[str, Any] = field(default_factory=dict)
    #: A key of DIFFERENCES when the two runtimes differ on purpose.
    difference: str | None = None
    #: For a production-only rule that local workerd does not enforce (the six-socket
    #: queue): the outcome steps production shows, asserted on tcpcli alone.
    production: tuple[Step, ...] | None = None

    def program(self) -> list[Step]:
        """The steps as both runners receive them: the connect comes first."""
        connect = {"op": "connect", "as": "main", "address": self.address,
                   "options": self.options}
        return [connect, *self.steps]


# ---------------------------------------------------------------------------- steps


def opened(ms: int = SETTLES, socket: str = "main") -> Step:
    return {"op": "opened", "within_ms": ms, "socket": socket}


def closed(ms: int = SETTLES, socket: str = "main") -> Step:
    return {"op": "closed", "within_ms": ms, "socket": socket}


def close(ms: int = SETTLES, socket: str = "main") -> Step:
    return {"op": "close", "within_ms": ms, "socket": socket}


def write(data: str, ms: int = SETTLES, socket: str = "main") -> Step:
    return {"op": "write", "data": data, "within_ms": ms, "socket": socket}


def write_value(value: Any, ms: int = SETTLES) -> Step:
    return {"op": "write-value", "value": value, "within_ms": ms}


def write_nowait(data: str) -> Step:
    return {"op": "write-nowait", "data": data}


def pending_writes(ms: int = SETTLES) -> Step:
    return {"op": "pending-writes", "within_ms": ms}


def close_writer(ms: int = SETTLES, socket: str = "main") -> Step:
    return {"op": "close-writer", "within_ms": ms, "socket": socket}


def read(size: int | None = None, ms: int = SETTLES, socket: str = "main") -> Step:
    step: Step = {"op": "read", "within_ms": ms, "socket": socket}
    if size is not None:
        step["bytes"] = size
    return step


def cancel_reader(ms: int = SETTLES) -> Step:
    return {"op": "cancel-reader", "within_ms": ms}


def start_tls(as_: str = "tls", socket: str = "main", again: str | None = None) -> Step:
    step: Step = {"op": "start-tls", "as": as_, "socket": socket}
    if again is not None:
        step["again"] = again
    return step


def opened_all(sockets: list[str], ms: int = SETTLES) -> Step:
    return {"op": "opened-all", "sockets": sockets, "within_ms": ms}


def round_trip_all(sockets: list[str], ms: int = SETTLES) -> Step:
    return {"op": "round-trip-all", "sockets": sockets, "within_ms": ms}


def attrs(socket: str = "main") -> Step:
    return {"op": "attrs", "socket": socket}


def sleep(ms: int) -> Step:
    return {"op": "sleep", "ms": ms}


def connect(as_: str, address: str | dict[str, Any], **options: Any) -> Step:
    return {"op": "connect", "as": as_, "address": address, "options": options}


RELEASE_LOCKS: Step = {"op": "release-locks"}
SECOND_WRITER: Step = {"op": "second-writer"}
SECOND_READER: Step = {"op": "second-reader"}

#: After a connect() that does not throw: how the connection ends up.
PROBE: tuple[Step, ...] = (opened(), close())
#: A full round trip through the echo peer.
ROUND_TRIP: tuple[Step, ...] = (opened(), write("ping"), read(4), close(), closed())


# ---------------------------------------------------------------------------- differences

DIFFERENCES: dict[str, Difference] = {
    "lazy-connect": Difference(
        "The connection starts when the socket is first awaited",
        "workerd starts connecting inside connect(); structured concurrency gives a "
        "background connect no owner, so tcpcli starts it on the first await of `opened`, "
        "`closed`, a read, a write or `close()`. A socket closed before that never "
        "connects, and its `opened` rejects. Likewise start_tls() hands the connection to "
        "the upgraded socket when either socket is next awaited (workerd: a tick later), so "
        "a second start_tls() after an unrelated await still says \"startTls has already "
        "been called\" where workerd says the connection was closed.",
    ),
    "stream-locks": Difference(
        "Streams have no reader/writer locks",
        "anyio byte streams are not locked to a reader or writer, so the locking "
        "TypeErrors of WHATWG streams (and startTls() waiting for locks to be released) "
        "have no counterpart.",
    ),
    "closed-both-directions": Difference(
        "With allow_half_open, `closed` resolves once both directions have ended",
        "workerd keeps `closed` pending until close() even after our FIN was sent and the "
        "peer's was read; tcpcli resolves it then, since nothing more can happen on the "
        "socket.",
    ),
    "name-resolution": Difference(
        "Names are normalized and resolved by tcpcli itself",
        "tcpcli folds case, IDNA and one trailing dot and knows the RFC 6761 loopback names "
        "before it asks DNS (dnspython); workerd hands the name as written to the system "
        "resolver, which (in the suite's namespace, without DNS) does not know `localhost.`.",
    ),
    "ipv6-socketaddress": Difference(
        "A bare IPv6 `SocketAddress.hostname` is bracketed",
        "workerd joins `::1` and the port into the ambiguous `::1:443`, which its proxy cannot "
        "connect to; tcpcli brackets it (`[::1]:443`) and connects (spec §7.8).",
    ),
    "policy": Difference(
        "Destination policy",
        "tcpcli refuses loopback, private and Cloudflare destinations by default, as "
        "production Workers do; local workerd allows what its config allows. (Every other "
        "scenario runs the library with the `open` policy.)",
    ),
    "port-25": Difference(
        "Port 25 is refused before connecting",
        "`Connections to port 25 are prohibited` is production-only: workerd has no such "
        "rule and just tries the port. tcpcli's default policy refuses it with the "
        "production text.",
    ),
    "socket-cap": Difference(
        "Six simultaneous sockets per invocation",
        "Production queues the seventh connection until one of six closes (or cancels the "
        "least recently used idle one); local workerd opens it at once. tcpcli enforces the "
        "production rule by default (lifted with `max_sockets=None`, as every other "
        "scenario runs).",
    ),
    "awaited-errors": Difference(
        "Stream misuse is reported by the awaited call",
        "workerd throws synchronously from getWriter()/getReader() on a stream locked by "
        "startTls(); Python's send() and receive() are coroutines, so tcpcli raises the same "
        "TypeError and text when the call is awaited.",
    ),
    "error-prefix": Difference(
        "No `jsg.Error: ` prefix",
        "workerd's write on a refused socket rejects with the Workers text behind a literal "
        "`jsg.Error: ` (an internal type name leaking into the message); tcpcli gives the "
        "documented text alone.",
    ),
    "tls-failure-text": Difference(
        "A failed start_tls() handshake names its cause",
        "workerd rejects with `internal error; reference = <id>`; tcpcli rejects `opened` with "
        "the TLS error itself (kind `tls`, the OpenSSL reason), whose `workers_message` is the "
        "proxy-failure text.",
    ),
    "timeouts": Difference(
        "Optional connect timeout",
        "Workers has no connect timeout; tcpcli offers one (opt-in), which rejects `opened` "
        "where workerd stays pending.",
    ),
}


# ---------------------------------------------------------------------------- scenarios

SCENARIOS: list[Scenario] = []


def scenario(id_: str, topic: str, address: str | dict[str, Any], *steps: Step,
             **kwargs: Any) -> None:
    SCENARIOS.append(Scenario(id_, topic, address, tuple(steps), **kwargs))


# Address strings: parsed and checked synchronously by connect(); those that pass are
# opened (DNS names fail to resolve in the isolated namespace) and closed.
_LONG_NAME_253 = ".".join(["a" * 63] * 3 + ["b" * 61])
_ADDRESS_STRINGS: list[tuple[str, str]] = [
    ("ipv4", "127.0.0.1:{echo}"),
    ("localhost", "localhost:{echo}"),
    ("localhost-upper", "LOCALHOST:{echo}"),
    ("localhost-trailing-dot", "localhost.:{echo}"),
    ("ipv6", "[::1]:{echo}"),
    ("ipv6-expanded", "[0:0:0:0:0:0:0:1]:{echo}"),
    ("ipv6-mapped-ipv4", "[::ffff:127.0.0.1]:{echo}"),
    ("ipv6-mapped-hex", "[::FFFF:7F00:1]:{echo}"),
    ("unspecified-ipv4", "0.0.0.0:{echo}"),
    ("legacy-ipv4-short", "127.1:{echo}"),
    ("legacy-ipv4-hex", "0x7f.0.0.1:{echo}"),
    ("legacy-ipv4-decimal", "2130706433:{echo}"),
    ("port-leading-zero", "127.0.0.1:0{echo}"),
    ("refused", "127.0.0.1:{refused}"),
    ("refused-ipv6", "[::1]:{refused}"),
    ("port-80", "127.0.0.1:80"),
    ("port-443", "127.0.0.1:443"),
    ("port-080", "127.0.0.1:080"),
    ("port-00443", "127.0.0.1:00443"),
    ("port-80-ipv6", "[::1]:80"),
    ("port-0", "127.0.0.1:0"),
    ("port-65535", "127.0.0.1:65535"),
    ("missing-port", "localhost"),
    ("empty-port", "localhost:"),
    ("empty", ""),
    ("only-port", ":80"),
    ("space-in-host", "a b:80"),
    ("port-65536", "localhost:65536"),
    ("port-huge", "localhost:99999999999"),
    ("port-negative", "localhost:-1"),
    ("port-plus", "localhost:+80"),
    ("port-space", "localhost: 80"),
    ("port-name", "localhost:http"),
    ("two-ports", "localhost:80:90"),
    ("bracketed-ipv4", "[127.0.0.1]:80"),
    ("ipv6-unbracketed", "::1:80"),
    ("ipv6-missing-port", "[::1]"),
    ("ipv6-empty-port", "[::1]:"),
    ("ipv6-unclosed", "[::1:80"),
    ("ipv6-zone", "[fe80::1%25lo]:80"),
    ("userinfo", "user@127.0.0.1:80"),
    ("path", "127.0.0.1:80/path"),
    ("query", "127.0.0.1:80?x=1"),
    ("fragment", "127.0.0.1:80#top"),
    ("url-http", "http://127.0.0.1:80"),
    ("url-tcp", "tcp://127.0.0.1:{echo}"),
    ("idn", "bücher.example:80"),
    ("punycode", "xn--bcher-kva.example:{refused}"),
    ("underscore", "under_score.example:{refused}"),
    ("leading-hyphen", "-leading.example:{refused}"),
    ("trailing-dot", "host.example.:{refused}"),
    ("percent-encoded", "%31%32%37.0.0.1:80"),
    ("asterisk", "*:80"),
    ("leading-space", " 127.0.0.1:80"),
    ("tab", "local\thost:80"),
    ("trailing-newline", "localhost:80\n"),
    ("nul", "local\x00host:80"),
    ("backslash", "127.0.0.1\\:80"),
    ("length-255", _LONG_NAME_253 + ":9"),
    ("length-256", "c" + _LONG_NAME_253 + ":9"),
]
_ADDRESS_DIFFERENCES = {"localhost-trailing-dot": "name-resolution"}
for _name, _address in _ADDRESS_STRINGS:
    scenario(f"address-{_name}", "address string", _address, *PROBE,
             difference=_ADDRESS_DIFFERENCES.get(_name))


# secureTransport: every value the option takes, and near misses.
scenario("transport-default", "secureTransport", "localhost:{echo}", opened(), attrs(), close())
for _value, _peer in [("off", "echo"), ("on", "tls"), ("starttls", "echo")]:
    scenario(f"transport-{_value}", "secureTransport", f"localhost:{{{_peer}}}",
             opened(), attrs(), close(), options={"secureTransport": _value})
_NEAR_MISSES: list[tuple[str, object]] = [
    ("ON", "ON"), ("Off", "Off"), ("StartTLS", "StartTLS"), ("tls", "tls"), ("empty", ""),
    ("padded", " on"), ("boolean", True), ("null", None),
]
for _label, _option in _NEAR_MISSES:
    scenario(f"transport-{_label}", "secureTransport", "localhost:{echo}", *PROBE,
             options={"secureTransport": _option})


# SocketAddress objects: hostname + port, joined without parsing.
def _socket_address(hostname: str, port: Any) -> dict[str, Any]:
    return {"hostname": hostname, "port": port}


for _name, _hostname, _port in [
    ("ipv4", "127.0.0.1", "{echo}"),
    ("localhost", "localhost", "{echo}"),
    ("ipv6-bracketed", "[::1]", "{echo}"),
    ("ipv6-bare", "::1", "{echo}"),
    ("port-80", "127.0.0.1", 80),
    ("port-0", "127.0.0.1", 0),
    ("port-fraction", "127.0.0.1", 80.5),
    ("port-nan", "127.0.0.1", {"$number": "NaN"}),
    ("port-infinity", "127.0.0.1", {"$number": "Infinity"}),
    ("port-negative", "127.0.0.1", -1),
    ("port-65536", "127.0.0.1", 65536),
    ("port-string", "127.0.0.1", "80"),
    ("empty-hostname", "", "{refused}"),
    ("hostname-with-port", "127.0.0.1:80", "{echo}"),
    ("hostname-space", "a b", 80),
    ("hostname-idn", "bücher.example", 80),
    ("hostname-too-long", "c" + _LONG_NAME_253, 80),
]:
    scenario(f"socketaddress-{_name}", "SocketAddress", _socket_address(_hostname, _port),
             *PROBE, difference="ipv6-socketaddress" if _name == "ipv6-bare" else None)


# Reading, writing, half-close and close.
scenario("echo-round-trip", "streams", "127.0.0.1:{echo}", *ROUND_TRIP)
scenario("write-before-opened", "streams", "127.0.0.1:{echo}",
         write("early"), read(5), opened(), close())
scenario("half-close-then-read", "streams", "127.0.0.1:{echo}",
         opened(), write("abc"), close_writer(), read(), closed())
scenario("write-after-close-writer", "streams", "127.0.0.1:{echo}",
         opened(), close_writer(), write("late"), read(), closed())
scenario("write-after-close", "streams", "127.0.0.1:{echo}",
         opened(), close(), write("late"), closed())
scenario("close-writer-after-close", "streams", "127.0.0.1:{echo}",
         opened(), close(), close_writer())
scenario("read-after-close", "streams", "127.0.0.1:{echo}",
         opened(), close(), read(ms=STAYS_PENDING))
scenario("close-twice", "streams", "127.0.0.1:{echo}",
         opened(), close(), close(), opened(), closed())
scenario("close-with-pending-writes", "streams", "127.0.0.1:{silent}",
         opened(), write_nowait("a" * 1000), write_nowait("b" * 1000), close(),
         pending_writes(), closed())
scenario("close-before-opened", "streams", "127.0.0.1:{silent}",
         close(), opened(), closed(), difference="lazy-connect")
scenario("connect-without-await", "streams", "127.0.0.1:{silent}",
         sleep(200), difference="lazy-connect")
scenario("write-empty", "streams", "127.0.0.1:{echo}",
         opened(), write(""), write("x"), read(1), close())
scenario("write-string", "streams", "127.0.0.1:{echo}",
         opened(), write_value("é"), read(2), close())
scenario("write-number", "streams", "127.0.0.1:{echo}", opened(), write_value(123), close())
scenario("write-object", "streams", "127.0.0.1:{echo}",
         opened(), write_value({"a": 1}), close())
scenario("write-null", "streams", "127.0.0.1:{echo}", opened(), write_value(None), close())
scenario("cancel-reader", "streams", "127.0.0.1:{echo}",
         opened(), cancel_reader(), write("x"), closed(STAYS_PENDING), close(), closed())
scenario("second-writer", "streams", "127.0.0.1:{echo}",
         opened(), SECOND_WRITER, close(), difference="stream-locks")
scenario("second-reader", "streams", "127.0.0.1:{echo}",
         opened(), SECOND_READER, close(), difference="stream-locks")

# Half-open: a peer that greets and half-closes at once.
scenario("half-open-off-peer-eof", "half-open", "127.0.0.1:{greet}",
         opened(), read(), write("late"), closed())
scenario("half-open-off-closed-waits-for-read", "half-open", "127.0.0.1:{greet}",
         opened(), sleep(200), closed(STAYS_PENDING), read(), closed())
scenario("half-open-on-peer-eof", "half-open", "127.0.0.1:{greet}",
         opened(), read(), write("late"), closed(STAYS_PENDING), close(), closed(),
         options={"allowHalfOpen": True})
scenario("half-open-on-both-directions", "half-open", "127.0.0.1:{greet}",
         opened(), read(), close_writer(), closed(STAYS_PENDING),
         options={"allowHalfOpen": True}, difference="closed-both-directions")
scenario("half-open-default-is-off", "half-open", "127.0.0.1:{greet}",
         opened(), read(), write("late"), options={"allowHalfOpen": False})

# Failures: refused, reset.
scenario("refused-closed-rejects", "failures", "127.0.0.1:{refused}",
         closed(), opened())
scenario("refused-close-resolves", "failures", "127.0.0.1:{refused}",
         opened(), close(), closed())
scenario("refused-write", "failures", "127.0.0.1:{refused}", write("x"), closed(),
         difference="error-prefix")
scenario("refused-read", "failures", "127.0.0.1:{refused}", read(), closed())
scenario("peer-reset", "failures", "127.0.0.1:{reset}", opened(), read(), closed())

# TLS ("on") and STARTTLS.
scenario("tls-round-trip", "TLS", "localhost:{tls}", *ROUND_TRIP,
         options={"secureTransport": "on"})
scenario("tls-ip-address", "TLS", "127.0.0.1:{tls}", *ROUND_TRIP,
         options={"secureTransport": "on"})
scenario("tls-ipv6", "TLS", "[::1]:{tls}", *ROUND_TRIP, options={"secureTransport": "on"})
scenario("tls-half-close", "TLS", "localhost:{tls}",
         opened(), write("abc"), close_writer(), read(), closed(),
         options={"secureTransport": "on"})
scenario("tls-handshake-plaintext-peer", "TLS", "localhost:{plain}",
         opened(), closed(), options={"secureTransport": "on"})
scenario("tls-handshake-untrusted-ca", "TLS", "localhost:{untrusted}",
         opened(), closed(), options={"secureTransport": "on"})
scenario("tls-handshake-name-mismatch", "TLS", "127.0.0.1:{nameonly}",
         opened(), closed(), options={"secureTransport": "on"})
scenario("tls-name-match", "TLS", "localhost:{nameonly}",
         opened(), close(), options={"secureTransport": "on"})
scenario("start-tls-on-off", "startTls", "localhost:{echo}",
         opened(), start_tls(), attrs(), close())
scenario("start-tls-on-on", "startTls", "localhost:{tls}",
         opened(), start_tls(), attrs(), close(), options={"secureTransport": "on"})
scenario("start-tls-dialogue", "startTls", "localhost:{starttls}",
         opened(), write("STARTTLS\r\n"), read(4), RELEASE_LOCKS, start_tls(), attrs(),
         attrs("tls"), closed(), opened(socket="tls"), write("secret", socket="tls"),
         read(6, socket="tls"), close(socket="tls"), closed(socket="tls"),
         options={"secureTransport": "starttls"})
scenario("start-tls-twice", "startTls", "localhost:{tls}",
         start_tls(), start_tls("again"), attrs(), close(socket="tls"),
         options={"secureTransport": "starttls"}, difference="lazy-connect")
scenario("start-tls-on-upgraded", "startTls", "localhost:{tls}",
         start_tls(), start_tls("again", socket="tls"), attrs("tls"), opened(socket="tls"),
         close(socket="tls"), options={"secureTransport": "starttls"})
scenario("start-tls-after-close", "startTls", "localhost:{echo}",
         opened(), close(), start_tls(), attrs(), options={"secureTransport": "starttls"})
# A second startTls() on the original socket: at once (before the connection has moved to
# the upgraded socket) it is "already been called"; once the upgrade has taken the
# connection, and after close(), it is "closed before startTls could be started".
scenario("start-tls-second-call", "startTls", "localhost:{starttls}",
         opened(), write("STARTTLS\r\n"), read(4), RELEASE_LOCKS,
         start_tls(again="again"), attrs(), closed(), opened(socket="tls"),
         start_tls("later"), attrs(), write("secret", socket="tls"), read(6, socket="tls"),
         close(socket="tls"), options={"secureTransport": "starttls"})
scenario("start-tls-second-call-before-opened", "startTls", "localhost:{tls}",
         start_tls(again="again"), attrs(), opened(), closed(), opened(socket="tls"),
         close(socket="tls"), options={"secureTransport": "starttls"})
scenario("start-tls-after-upgrade-and-close", "startTls", "localhost:{tls}",
         opened(), start_tls(), close(), start_tls("again"), attrs(), opened(socket="tls"),
         close(socket="tls"), closed(socket="tls"), options={"secureTransport": "starttls"})
scenario("start-tls-before-opened", "startTls", "localhost:{tls}",
         start_tls(), opened(), opened(socket="tls"), write("x", socket="tls"),
         read(1, socket="tls"), closed(), close(socket="tls"),
         options={"secureTransport": "starttls"})
scenario("start-tls-handshake-fails", "startTls", "localhost:{plain}",
         opened(), start_tls(), opened(socket="tls"), closed(socket="tls"),
         options={"secureTransport": "starttls"}, difference="tls-failure-text")
scenario("start-tls-old-socket", "startTls", "localhost:{tls}",
         opened(), start_tls(), opened(socket="tls"), write("x"), read(ms=STAYS_PENDING),
         close(), close(socket="tls"), options={"secureTransport": "starttls"},
         difference="awaited-errors")
scenario("start-tls-with-locks-held", "startTls", "localhost:{starttls}",
         opened(), write("STARTTLS\r\n"), read(4), start_tls(), attrs(),
         opened(socket="tls", ms=STAYS_PENDING),
         options={"secureTransport": "starttls"}, difference="stream-locks")

# Many sockets, policies, limits.
_SEVEN = tuple(connect(f"s{i}", "127.0.0.1:{echo}") for i in range(2, 8))
_SEVEN_OPENED = tuple(opened(socket=f"s{i}", ms=1000) for i in range(2, 8))
scenario("seven-sockets", "limits", "127.0.0.1:{echo}", *_SEVEN, opened(), *_SEVEN_OPENED)
# With six open and none busy, the seventh evicts the least recently used (production's
# deadlock rule): the first socket is gone.
scenario("seven-sockets-capped", "limits", "127.0.0.1:{echo}", *_SEVEN, opened(),
         *_SEVEN_OPENED, write("x"), library={"max_sockets": 6}, difference="socket-cap")

# Production's queue and deadlock rule (spec §5.1), which local workerd does not enforce (it
# opens every socket at once): sockets opened all at once with Promise.all, then used. Six
# are served; each one beyond needs the least recently used idle socket canceled, and using
# a canceled socket throws. Asserted on tcpcli alone.
def _all_at_once(count: int) -> None:
    names = ["main", *(f"s{i}" for i in range(2, count + 1))]
    connects = tuple(connect(name, "127.0.0.1:{echo}") for name in names[1:])
    opened_ok = {"resolved": {"remoteAddress": "127.0.0.1:{echo}", "localAddress": None}}
    canceled = {"type": "Error", "message": SOCKET_CANCELED}
    scenario(f"{count}-sockets-opened-at-once", "limits", "127.0.0.1:{echo}",
             *connects, opened_all(names), round_trip_all(names),
             library={"max_sockets": 6},
             production=(*({"op": "connect", "ok": True} for _ in names),
                         {"op": "opened-all", "results": [opened_ok] * count},
                         {"op": "round-trip-all", "echoed": 6,
                          "rejected": [canceled] * (count - 6)}))


_all_at_once(7)
_all_at_once(10)

scenario("policy-loopback", "limits", "127.0.0.1:{echo}", opened(), close(),
         library={"policy": "workers"}, difference="policy")
scenario("policy-port-25", "limits", "127.0.0.1:25", opened(), close(),
         library={"policy": "workers"}, difference="port-25")
scenario("port-25-open-policy", "limits", "127.0.0.1:25", opened(), close())
scenario("connect-timeout", "limits", "127.0.0.1:{blackhole}", opened(STAYS_PENDING),
         library={"connect_timeout": 0.1}, difference="timeouts")


def by_id() -> dict[str, Scenario]:
    found: dict[str, Scenario] = {}
    for item in SCENARIOS:
        if item.id in found:
            raise ValueError(f"duplicate scenario id {item.id}")
        found[item.id] = item
    return found
