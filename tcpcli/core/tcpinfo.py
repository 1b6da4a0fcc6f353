"""What the kernel knows about a TCP connection (Linux ``TCP_INFO``), next to what the
application measured: smoothed RTT and its variance, the minimum RTT, retransmits and
losses, reordering, the congestion window, MSS and path MTU, the delivery rate and the
bytes acknowledged.

``struct tcp_info`` (``linux/tcp.h``) grew over kernel versions; the kernel copies as much
as it has and says how much, so only the fields present are read. Elsewhere (macOS has
``TCP_CONNECTION_INFO`` with another layout, Windows none) :func:`tcp_info` returns None
and callers say the facts are absent.
"""

from __future__ import annotations

import socket
import struct
import sys

#: The struct's layout as Linux 5.x/6.x fills it, field names as in linux/tcp.h (without
#: ``tcpi_``). Naturally aligned, so the standard-size format reads it on every arch.
_FIELDS = (
    ("B", "state"), ("B", "ca_state"), ("B", "retransmits"), ("B", "probes"),
    ("B", "backoff"), ("B", "options"), ("B", "wscale"), ("B", "flags"),
    ("I", "rto"), ("I", "ato"), ("I", "snd_mss"), ("I", "rcv_mss"),
    ("I", "unacked"), ("I", "sacked"), ("I", "lost"), ("I", "retrans"), ("I", "fackets"),
    ("I", "last_data_sent"), ("I", "last_ack_sent"), ("I", "last_data_recv"),
    ("I", "last_ack_recv"),
    ("I", "pmtu"), ("I", "rcv_ssthresh"), ("I", "rtt"), ("I", "rttvar"),
    ("I", "snd_ssthresh"), ("I", "snd_cwnd"), ("I", "advmss"), ("I", "reordering"),
    ("I", "rcv_rtt"), ("I", "rcv_space"), ("I", "total_retrans"),
    ("Q", "pacing_rate"), ("Q", "max_pacing_rate"), ("Q", "bytes_acked"),
    ("Q", "bytes_received"),
    ("I", "segs_out"), ("I", "segs_in"), ("I", "notsent_bytes"), ("I", "min_rtt"),
    ("I", "data_segs_in"), ("I", "data_segs_out"),
    ("Q", "delivery_rate"), ("Q", "busy_time"), ("Q", "rwnd_limited"), ("Q", "sndbuf_limited"),
    ("I", "delivered"), ("I", "delivered_ce"),
    ("Q", "bytes_sent"), ("Q", "bytes_retrans"),
    ("I", "dsack_dups"), ("I", "reord_seen"), ("I", "rcv_ooopack"), ("I", "snd_wnd"),
)
_SIZES = {"B": 1, "I": 4, "Q": 8}
_BUFFER = 512


def _offset(wanted: str) -> int:
    offset = 0
    for code, name in _FIELDS:
        if name == wanted:
            return offset
        offset += _SIZES[code]
    raise KeyError(wanted)


#: Where ``rtt`` and ``total_retrans`` sit, for :func:`rtt_and_retransmits`.
_RTT_AT, _RETRANS_AT = _offset("rtt"), _offset("total_retrans")

_TCP_INFO: int = getattr(socket, "TCP_INFO", 11)
_LINUX = sys.platform.startswith("linux") and hasattr(socket, "TCP_INFO")

#: TCP states as linux/tcp_states.h numbers them.
_STATES = {1: "established", 2: "syn-sent", 3: "syn-recv", 4: "fin-wait1", 5: "fin-wait2",
           6: "time-wait", 7: "close", 8: "close-wait", 9: "last-ack", 10: "listen",
           11: "closing"}


def _unpack(raw: bytes) -> dict[str, int]:
    """The fields ``raw`` holds in full, by name."""
    values: dict[str, int] = {}
    offset = 0
    for code, name in _FIELDS:
        size = _SIZES[code]
        if offset + size > len(raw):
            break
        values[name] = struct.unpack_from("=" + code, raw, offset)[0]
        offset += size
    return values


def tcp_info(sock: socket.socket) -> dict[str, object] | None:
    """The kernel's facts about ``sock``'s connection, in the units people read (ms,
    bytes, bits per second), or None where the system does not tell (not Linux, not TCP,
    a socket already closed)."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None or not sys.platform.startswith("linux"):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, option, _BUFFER)
    except (OSError, ValueError):
        return None
    fields = _unpack(raw)
    if "rtt" not in fields:
        return None
    facts: dict[str, object] = {
        "state": _STATES.get(fields["state"], str(fields["state"])),
        "rtt_ms": fields["rtt"] / 1000,
        "rttvar_ms": fields["rttvar"] / 1000,
        "rto_ms": fields["rto"] / 1000,
        "mss": fields["snd_mss"],
        "pmtu": fields["pmtu"],
        "cwnd": fields["snd_cwnd"],
        "retransmits": fields["total_retrans"],
        "lost": fields["lost"],
        "reordering": fields["reordering"],
    }
    if "min_rtt" in fields:
        facts["min_rtt_ms"] = fields["min_rtt"] / 1000
    if "bytes_acked" in fields:
        facts["bytes_acked"] = fields["bytes_acked"]
        facts["bytes_received"] = fields["bytes_received"]
    if "delivery_rate" in fields:
        facts["delivery_rate_bps"] = fields["delivery_rate"] * 8
    if "bytes_retrans" in fields:
        facts["bytes_retrans"] = fields["bytes_retrans"]
    return facts


def rtt_and_retransmits(sock: socket.socket) -> tuple[int, int] | None:
    """The kernel's smoothed RTT (microseconds) and the segments it retransmitted, read
    without building :func:`tcp_info`'s dict: ``bench`` asks once per connection, where
    a connect on loopback costs tens of microseconds. None where the system does not tell."""
    if not _LINUX:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _RETRANS_AT + 4)
    except (OSError, ValueError):
        return None
    if len(raw) < _RETRANS_AT + 4:
        return None
    return (struct.unpack_from("=I", raw, _RTT_AT)[0],
            struct.unpack_from("=I", raw, _RETRANS_AT)[0])


def describe(facts: dict[str, object]) -> str:
    """One line for ``-v``: "kernel: rtt 0.045 ms ±0.022, min 0.030, mss 32741, ..."."""
    parts = [f"rtt {facts['rtt_ms']:.3f} ms ±{facts['rttvar_ms']:.3f}"]
    if "min_rtt_ms" in facts:
        parts.append(f"min {facts['min_rtt_ms']:.3f} ms")
    parts += [f"mss {facts['mss']}", f"pmtu {facts['pmtu']}", f"cwnd {facts['cwnd']}",
              f"retransmits {facts['retransmits']}", f"lost {facts['lost']}"]
    rate = float(str(facts.get("delivery_rate_bps", 0)))
    if rate:
        parts.append(f"delivery {rate / 1e6:.1f} Mbit/s")
    return "kernel tcp: " + ", ".join(parts)
