"""Destination policy: would a Worker be allowed to open this socket, and by which rule?

Profiles (DESIGN §4): ``workers`` (the default), ``workers-strict`` and ``open``. ``--allow``
and ``--deny`` entries (a host name, ``*.suffix``, an IP, a CIDR or ``port:N``) refine them.
Precedence: deny entries, then allow entries, then the profile's rules, else allowed.
Every :class:`Decision` names its rule, says what matched, and how to lift it.

The socket core asks twice and dials only what was judged: :meth:`Policy.check_name` before
DNS (ports, loopback names, and a literal in any spelling — see ``address.normalize_host``),
then :meth:`Policy.check_resolved` on every answer, refusing when *any* answer is blocked.
An IPv6 address is judged together with every IPv4 address it embeds (:func:`embedded_ipv4`).

Choices where the sources leave room:

* ``workers`` blocks 1.1.1.0/24 and 1.0.0.0/24 (rule ``cloudflare-dns``): DESIGN §4 says so,
  though spec §5.3 notes production behaviour for them is unverified.
* ``reserved`` is KJ's always-denied list (spec §3.8: 192.0.0.0/24, 240.0.0.0/4, 2001::/23 —
  which covers every Teredo address), minus what has its own rule (multicast, broadcast).
  ``workers-strict`` adds the deprecated 6to4 relay anycast 192.88.99.0/24, discard-only
  100::/64, site-local fec0::/10 and the benchmarking and documentation ranges.
* Port 0 is refused by every profile but ``open``: Workers accepts it in ``connect()`` and
  then fails with the proxy error, so nothing good can come of dialing it.
* An allow entry for an address lifts the profile's rules for that address (and for its
  IPv4-mapped form, the same destination); a deny entry also matches any IPv4 address
  embedded in an IPv6 one, so a denied network cannot be reached through a translator.
* ``*.example.com`` matches names below example.com, not example.com itself.
* Cloud metadata endpoints (rule ``cloud-metadata``: 169.254.169.254, fd00:ec2::254 and
  their kin, and the names that lead there, such as metadata.google.internal) are refused
  by ``workers`` too, though a Worker's own runtime has no such service to protect. tcpcli
  is also a library that services embed, and a URL or host name taken from a request is
  the classic SSRF route to instance credentials. ``--allow ADDRESS`` (or ``--policy
  open``) lifts it for a user who means it.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import NamedTuple

from tcpcli.core.address import (
    NormalizedHost,
    join_host_port,
    normalize_host,
    parse_port,
    split_target,
)
from tcpcli.core.errors import AddressError, PolicyError
from tcpcli.record import Record, field

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class Profile(StrEnum):
    WORKERS = "workers"
    WORKERS_STRICT = "workers-strict"
    OPEN = "open"
    #: Only the declared targets (VPC Services-style bindings), nothing else.
    BINDINGS = "bindings"


class Decision(NamedTuple):
    """One verdict: ``rule`` is stable and greppable, ``reason`` one sentence, ``lift`` the
    option that would allow it ("" when allowed), ``profile`` the policy that decided.
    (NamedTuples here: every run checks a destination, and building a frozen dataclass
    costs a run's start-up more than the check.)"""

    allowed: bool
    rule: str
    reason: str
    address: str | None = None
    lift: str = ""
    profile: Profile = Profile.WORKERS


# ------------------------------------------------------------------ the facts


class _Range(NamedTuple):
    rule: str
    network: IPNetwork
    what: str  # a noun phrase: "<address> is <what> (<network><note>)"
    strict_only: bool
    note: str = ""


#: Rule names, for ``Decision.rule``.
STRICT_RULES = frozenset({"private", "cgnat", "link-local", "ula", "documentation",
                          "benchmarking", "site-local"})

#: Host names that mean this machine whatever DNS says (plus *.localhost, RFC 6761, and the
#: machine's own host name). The Debian and Red Hat /etc/hosts spellings are included.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost",
                            "ip6-loopback", "localhost6", "localhost6.localdomain6"})


#: Cloud instance-metadata services: credentials and user data for whoever asks from the
#: instance. AWS IMDS (IPv4 and IPv6), ECS task metadata and EKS pod identity; GCP, Azure,
#: DigitalOcean, OpenStack and Oracle share 169.254.169.254; Azure's wire server; Alibaba.
CLOUD_METADATA_ADDRESSES = (
    "169.254.169.254/32", "fd00:ec2::254/128", "169.254.170.2/32", "169.254.170.23/32",
    "fd00:ec2::23/128", "168.63.129.16/32", "100.100.100.200/32", "192.0.0.192/32",
)
#: Names that mean a metadata service wherever they are resolved (refused before DNS).
CLOUD_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog",
                                  "instance-data", "instance-data.ec2.internal"})


@functools.cache
def cloudflare_ranges() -> dict[str, object]:
    """The bundled Cloudflare list (``tcpcli/data/cloudflare-ips.json``), read once, when a
    destination is first checked against it (an allowed one never is). pkgutil rather than
    importlib.resources, which costs more to import than the whole table to parse."""
    import json
    import pkgutil

    raw = pkgutil.get_data("tcpcli.data", "cloudflare-ips.json")
    if raw is None:
        raise FileNotFoundError("tcpcli/data/cloudflare-ips.json is missing from the package")
    data: dict[str, object] = json.loads(raw)
    return data


#: The blocked ranges as (rule, network, what, strict only), in match order: these come
#: before Cloudflare's published list, the trailing ones after it.
_LEADING_ROWS: tuple[tuple[str, str, str, bool], ...] = (
    *(("cloud-metadata", net, "a cloud instance-metadata endpoint", False)
      for net in CLOUD_METADATA_ADDRESSES),
    ("loopback", "127.0.0.0/8", "a loopback address", False),
    ("loopback", "::1/128", "the loopback address", False),
    ("unspecified", "0.0.0.0/8", 'an unspecified ("this network") address', False),
    ("unspecified", "::/128", "the unspecified address", False),
    ("broadcast", "255.255.255.255/32", "the limited broadcast address", False),
    ("multicast", "224.0.0.0/4", "a multicast address", False),
    ("multicast", "ff00::/8", "a multicast address", False),
    ("reserved", "240.0.0.0/4", "a reserved address", False),
    ("reserved", "192.0.0.0/24", "an IETF protocol assignment (reserved)", False),
    ("reserved", "2001::/23", "an IETF protocol assignment (reserved; Teredo is here)",
     False),
    ("cloudflare-dns", "1.1.1.0/24", "an address of Cloudflare's public DNS resolver", False),
    ("cloudflare-dns", "1.0.0.0/24", "an address of Cloudflare's public DNS resolver", False),
)
_TRAILING_ROWS: tuple[tuple[str, str, str, bool], ...] = (
    ("private", "10.0.0.0/8", "a private address", True),
    ("private", "172.16.0.0/12", "a private address", True),
    ("private", "192.168.0.0/16", "a private address", True),
    ("cgnat", "100.64.0.0/10", "a shared (carrier-grade NAT) address", True),
    ("link-local", "169.254.0.0/16", "a link-local address (cloud metadata lives here)",
     True),
    ("link-local", "fe80::/10", "a link-local address", True),
    ("ula", "fc00::/7", "a unique local address", True),
    ("site-local", "fec0::/10", "a site-local address (deprecated)", True),
    ("documentation", "192.0.2.0/24", "a documentation address", True),
    ("documentation", "198.51.100.0/24", "a documentation address", True),
    ("documentation", "203.0.113.0/24", "a documentation address", True),
    ("documentation", "2001:db8::/32", "a documentation address", True),
    ("documentation", "3fff::/20", "a documentation address", True),
    ("benchmarking", "198.18.0.0/15", "a benchmarking address", True),
    ("reserved", "192.88.99.0/24", "a deprecated 6to4 relay anycast address", True),
    ("reserved", "100::/64", "a discard-only address", True),
)


@functools.cache
def blocked_ranges() -> tuple[_Range, ...]:
    """The one table of blocked ranges, in match order (broadcast before 240.0.0.0/4)."""
    cloudflare = cloudflare_ranges()
    published = [*_strings(cloudflare["ipv4"]), *_strings(cloudflare["ipv6"])]
    dated = f", Cloudflare's published list of {cloudflare['retrieved']}"
    return (*_leading_ranges(),
            *(_Range("cloudflare", ip_network(net), "a Cloudflare address", False, dated)
              for net in published),
            *(_Range(rule, ip_network(net), what, strict, "")
              for rule, net, what, strict in _TRAILING_ROWS))


@functools.cache
def _leading_ranges() -> tuple[_Range, ...]:
    """The table's rows before Cloudflare's published list: most refusals (loopback,
    metadata) match here, and then the list need not be read at all."""
    return tuple(_Range(rule, ip_network(net), what, strict, "")
                 for rule, net, what, strict in _LEADING_ROWS)


def _ranges_in_match_order() -> Iterator[_Range]:
    """The table's rows, reading Cloudflare's list only once the leading rows are past
    (a generator: the list is not read for an address a leading row matches)."""
    leading = _leading_ranges()
    yield from leading
    yield from blocked_ranges()[len(leading):]


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError("tcpcli/data/cloudflare-ips.json: ipv4/ipv6 must be lists of CIDRs")
    return list(value)


_MAPPED = IPv6Network("::ffff:0:0/96")
_TRANSLATED = IPv6Network("::ffff:0:0:0/96")
_COMPATIBLE = IPv6Network("::/96")
_NAT64 = (IPv6Network("64:ff9b::/96"), IPv6Network("64:ff9b:1::/48"))


def embedded_ipv4(ip: IPv6Address) -> list[tuple[str, IPv4Address]]:
    """Every IPv4 address ``ip`` carries, named by mechanism, so the policy judges it too.

    IPv4-mapped ::ffff:0:0/96 and IPv4-translated (SIIT) ::ffff:0:0:0/96; IPv4-compatible
    ::/96 (but not :: or ::1); NAT64 64:ff9b::/96 and the local-use 64:ff9b:1::/48 (read
    as the last 32 bits, the /96 layout); 6to4 2002::/16; Teredo 2001::/32 — the client
    (the obfuscated last 32 bits) and the server.
    """
    low32 = IPv4Address(int(ip) & 0xFFFFFFFF)
    found: list[tuple[str, IPv4Address]] = []
    if ip in _MAPPED:
        found.append(("IPv4-mapped", low32))
    elif ip in _TRANSLATED:
        found.append(("IPv4-translated", low32))
    elif ip in _COMPATIBLE and int(ip) > 1:
        found.append(("IPv4-compatible", low32))
    elif any(ip in prefix for prefix in _NAT64):
        found.append(("NAT64", low32))
    elif ip.sixtofour is not None:
        found.append(("6to4", ip.sixtofour))
    elif ip.teredo is not None:
        server, client = ip.teredo
        found += [("Teredo", client), ("Teredo server", server)]
    return found


def show(ip: IPAddress) -> str:
    """An address as people write it: IPv4-mapped in mixed notation (::ffff:127.0.0.1)."""
    if isinstance(ip, IPv6Address) and ip in _MAPPED:
        return f"::ffff:{IPv4Address(int(ip) & 0xFFFFFFFF)}"
    return str(ip)


# ------------------------------------------------------------------ allow / deny entries


class _Entry(NamedTuple):
    """One parsed --allow/--deny entry; exactly one of name, suffix, network, port is set."""

    text: str
    name: str | None = None
    suffix: str | None = None  # ".example.com" for "*.example.com"
    network: IPNetwork | None = None
    port: int | None = None

    def matches_name(self, name: str) -> bool:
        return name == self.name or (self.suffix is not None and name.endswith(self.suffix))

    def matches_address(self, ip: IPAddress) -> bool:
        return self.network is not None and ip.version == self.network.version \
            and ip in self.network


def _parse_entry(text: str, option: str) -> _Entry:
    """Read one entry, or raise ValueError naming it and saying what would be accepted."""
    raw = text.strip()
    usage = "use a host name, *.suffix, an IP address, a CIDR or port:N"
    if raw == "":
        raise ValueError(f"empty {option} entry: {usage}")
    if raw.lower().startswith("port:"):
        try:
            return _Entry(raw, port=parse_port(raw[5:]))
        except ValueError as exc:
            raise ValueError(f"invalid {option} entry {text!r}: {exc}") from None
    if "/" in raw:
        try:
            return _Entry(raw, network=ip_network(raw))
        except ValueError as exc:
            hint = ""
            with contextlib.suppress(ValueError):
                hint = f"; did you mean {ip_network(raw, strict=False)}?"
            raise ValueError(f"invalid {option} entry {text!r}: {exc}{hint}") from None
    wildcard = raw.startswith("*.")
    try:
        host = normalize_host(raw[2:] if wildcard else raw)
    except AddressError as exc:
        raise ValueError(f"invalid {option} entry {text!r}: {exc}; {usage}") from None
    if host.literal is not None:
        if wildcard:
            raise ValueError(f"invalid {option} entry {text!r}: *. needs a domain, not an "
                             "address; use a CIDR for address ranges")
        return _Entry(raw, network=ip_network(host.literal))
    return _Entry(raw, suffix="." + host.name) if wildcard else _Entry(raw, name=host.name)


# ------------------------------------------------------------------ the policy


class Policy(Record, frozen=True):
    """A profile plus allow/deny entries; the entries are validated on construction."""

    profile: Profile = Profile.WORKERS
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    #: The ``bindings`` profile's declared targets, "host:port" each: the only reachable
    #: destinations (a VPC Services binding names what a Worker may reach, nothing else).
    bindings: tuple[str, ...] = ()
    _allow: tuple[_Entry, ...] = field(init=False, repr=False, compare=False)
    _deny: tuple[_Entry, ...] = field(init=False, repr=False, compare=False)
    _bound: frozenset[tuple[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "profile", _profile(self.profile))
        object.__setattr__(self, "allow", tuple(self.allow))
        object.__setattr__(self, "deny", tuple(self.deny))
        object.__setattr__(self, "bindings", tuple(self.bindings))
        object.__setattr__(self, "_allow", tuple(_parse_entry(e, "--allow") for e in self.allow))
        object.__setattr__(self, "_deny", tuple(_parse_entry(e, "--deny") for e in self.deny))
        object.__setattr__(self, "_bound", frozenset(_parse_binding(b) for b in self.bindings))

    @classmethod
    def parse(cls, profile: str = "workers", allow: Iterable[str] = (),
              deny: Iterable[str] = (), bindings: Iterable[str] = ()) -> Policy:
        """Build a policy from option values; ValueError names a bad profile or entry."""
        return cls(_profile(profile), tuple(allow), tuple(deny), tuple(bindings))

    # -------------------------------------------------------------- the three questions

    def check_name(self, host: NormalizedHost, port: int) -> Decision:
        """Before DNS: the port, the name (loopback names, entries), or the literal."""
        if host.literal is not None:
            return self.check_address(host.literal, port)
        name = host.name
        refusal = self._denied_port(port) or self._denied_name(name, name) \
            or self._port_rule(port)
        if refusal is not None:
            return refusal
        if self.profile is Profile.BINDINGS:
            return self._binding(name, port, name)
        allowed_by = self._allowed_name(name)
        if allowed_by is not None:
            return self._allow_decision(f"{name} is allowed by --allow {allowed_by.text}", name)
        if self.profile is Profile.OPEN:
            return self._allow_decision("the open policy blocks no destination", name,
                                        rule="profile-open")
        loopback = _loopback_name(name)
        if loopback is not None:
            return self._block("loopback-name", loopback, name, f"--allow {name} or --policy open")
        if name in CLOUD_METADATA_NAMES:
            return self._block("cloud-metadata", f"{name} names a cloud instance-metadata "
                               "service", name, f"--allow {name} or --policy open")
        return self._allow_decision(f"{name} is not blocked by name; its addresses are "
                                    "checked after resolution", name, rule="default")

    def check_address(self, ip: IPAddress, port: int, *,
                      hostname: str | None = None) -> Decision:
        """One address (and every IPv4 address it embeds); ``hostname`` if it was resolved."""
        return self._judge(ip, port, hostname=_canonical_name(hostname))

    def check_resolved(self, hostname: str, ips: Sequence[IPAddress], port: int) -> Decision:
        """Every answer for ``hostname``: refused if any is, naming the first blocked one."""
        name = _canonical_name(hostname)
        if self.profile is Profile.BINDINGS and name is not None:
            # The binding names the host: its answers are what it declared, bar --deny.
            for ip in ips:
                embedded = embedded_ipv4(ip) if isinstance(ip, IPv6Address) else []
                refusal = self._denied_address(ip, embedded, f"{name} resolves to {show(ip)}")
                if refusal is not None:
                    return refusal
            return self._binding(name, port, name)
        decisions = [self._judge(ip, port, hostname=name, resolved=True) for ip in ips]
        for decision in decisions:
            if not decision.allowed:
                return decision
        shown = ", ".join(show(ip) for ip in ips) or "no address"
        rules = {decision.rule for decision in decisions}
        rule = "allow-entry" if "allow-entry" in rules else (
            "profile-open" if self.profile is Profile.OPEN else "default")
        return self._allow_decision(f"{name} resolves to {shown}, none of them blocked",
                                    name, rule=rule)

    # -------------------------------------------------------------- the steps

    def _judge(self, ip: IPAddress, port: int, *, hostname: str | None,
               resolved: bool = False) -> Decision:
        embedded = embedded_ipv4(ip) if isinstance(ip, IPv6Address) else []
        subject = f"{hostname} resolves to {show(ip)}" if resolved else show(ip)
        refusal = self._denied_port(port) \
            or (self._denied_name(hostname, show(ip)) if hostname else None) \
            or self._denied_address(ip, embedded, subject) \
            or self._port_rule(port)
        if refusal is not None:
            return refusal
        if self.profile is Profile.BINDINGS:
            return self._binding(hostname or str(ip), port, show(ip))
        if hostname is not None:
            allowed_by = self._allowed_name(hostname)
            if allowed_by is not None:
                return self._allow_decision(
                    f"{hostname} is allowed by --allow {allowed_by.text}", show(ip))
        for entry in self._allow:
            mapped = [inner for how, inner in embedded if how == "IPv4-mapped"]
            if any(entry.matches_address(candidate) for candidate in (ip, *mapped)):
                return self._allow_decision(f"{show(ip)} is allowed by --allow {entry.text}",
                                            show(ip))
        if self.profile is Profile.OPEN:
            return self._allow_decision("the open policy blocks no destination", show(ip),
                                        rule="profile-open")
        lift_target = hostname if resolved and hostname else show(ip)
        for how, inner in [*embedded, ("", ip)]:
            matched = self._blocked_range(inner)
            if matched is None:
                continue
            verdict = f"{matched.what} ({matched.network}{matched.note})"
            if how:
                reason = f"{subject}, which embeds {inner} ({how}), {verdict}" if resolved \
                    else f"{subject} embeds {inner} ({how}), {verdict}"
            else:
                reason = f"{subject}, {verdict}" if resolved else f"{subject} is {verdict}"
            fallback = "--policy workers" if matched.rule in STRICT_RULES else "--policy open"
            return self._block(matched.rule, reason, show(ip),
                               f"--allow {lift_target} or {fallback}")
        return self._allow_decision(f"{subject} is not in a blocked range" if not resolved
                                    else f"{subject}, not in a blocked range", show(ip),
                                    rule="default")

    @property
    def bound_ports(self) -> frozenset[int]:
        """The ports the bindings declare: each can be judged differently from the rest."""
        return frozenset(port for _, port in self._bound)

    def _binding(self, host: str, port: int, address: str | None) -> Decision:
        """The bindings profile: a declared host:port, or refused."""
        where = join_host_port(host, port)
        if (host, port) in self._bound:
            return self._allow_decision(f"{where} is a declared target", address,
                                        rule="binding")
        declared = ", ".join(sorted(join_host_port(h, p) for h, p in self._bound))
        scope = f"reaches only {declared}" if declared else "declares none"
        return self._block("not-a-binding", f"{where} is not a declared target (the "
                           f"bindings policy {scope})", address,
                           "declare it as a [targets.NAME] in the configuration file, or "
                           "--policy workers")

    def _blocked_range(self, ip: IPAddress) -> _Range | None:
        strict = self.profile is Profile.WORKERS_STRICT
        for candidate in _ranges_in_match_order():
            if candidate.strict_only and not strict:
                continue
            if ip.version == candidate.network.version and ip in candidate.network:
                return candidate
        return None

    def _denied_port(self, port: int) -> Decision | None:
        for entry in self._deny:
            if entry.port == port:
                return self._block("deny-entry", f"port {port} matches --deny {entry.text}",
                                   None, f"remove --deny {entry.text}")
        return None

    def _denied_name(self, name: str, address: str) -> Decision | None:
        for entry in self._deny:
            if entry.matches_name(name):
                return self._block("deny-entry", f"{name} matches --deny {entry.text}",
                                   address, f"remove --deny {entry.text}")
        return None

    def _denied_address(self, ip: IPAddress, embedded: list[tuple[str, IPv4Address]],
                        subject: str) -> Decision | None:
        for entry in self._deny:
            if entry.matches_address(ip):
                return self._block("deny-entry", f"{subject} matches --deny {entry.text}",
                                   show(ip), f"remove --deny {entry.text}")
            for how, inner in embedded:
                if entry.matches_address(inner):
                    return self._block(
                        "deny-entry",
                        f"{subject} embeds {inner} ({how}), which matches --deny {entry.text}",
                        show(ip), f"remove --deny {entry.text}")
        return None

    def _port_rule(self, port: int) -> Decision | None:
        if self.profile is Profile.OPEN or any(entry.port == port for entry in self._allow):
            return None
        if port == 25:
            return self._block("port-25", "port 25 (SMTP) is closed to Workers; use Email "
                               "Workers to send mail", None, "--allow port:25 or --policy open")
        if port == 0:
            return self._block("port-0", "port 0 cannot be connected to (Workers fails it "
                               "with the proxy error)", None, "--policy open")
        return None

    def _allowed_name(self, name: str) -> _Entry | None:
        return next((entry for entry in self._allow if entry.matches_name(name)), None)

    def _block(self, rule: str, reason: str, address: str | None, lift: str) -> Decision:
        return Decision(False, rule, reason, address, lift, self.profile)

    def _allow_decision(self, reason: str, address: str | None,
                        rule: str = "allow-entry") -> Decision:
        return Decision(True, rule, reason, address, "", self.profile)


def _parse_binding(text: str) -> tuple[str, int]:
    """A declared target, "host:port", as the policy compares it (the host normalized)."""
    try:
        host, port = split_target(text)
        normalized = normalize_host(host)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid binding {text!r}: {exc}") from None
    name = str(normalized.literal) if normalized.literal is not None else normalized.name
    return name, port


def _profile(value: str) -> Profile:
    try:
        return Profile(value)
    except ValueError:
        choices = ", ".join(profile.value for profile in Profile)
        raise ValueError(f"unknown policy {value!r}: choose one of {choices}") from None


def _canonical_name(hostname: str | None) -> str | None:
    """A resolved name as the entries are written: normalized, or as given if it is odd."""
    if hostname is None:
        return None
    try:
        return normalize_host(hostname).name
    except AddressError:
        return hostname.lower()


def _loopback_name(name: str) -> str | None:
    """Why ``name`` means this machine before any DNS, or None."""
    if name in LOOPBACK_NAMES:
        return f"{name} is a loopback name (it always means this machine)"
    if name.endswith(".localhost"):
        return f"{name} is under .localhost, which always means this machine (RFC 6761)"
    own = _own_host_names()
    if name in own:
        return f"{name} is this machine's own host name"
    return None


def _own_host_names() -> frozenset[str]:
    """This machine's host name and its first label; read each time (it can change)."""
    try:
        full = socket.gethostname().lower()
    except OSError:
        return frozenset()
    full = full.removesuffix(".")
    return frozenset(name for name in (full, full.split(".")[0]) if name)


def raise_for(decision: Decision, *, target: str, port: int) -> None:
    """Raise PolicyError for a refusal: the rule, what a Worker would get, how to lift it."""
    if decision.allowed:
        return
    worker_text = PolicyError("", rule=decision.rule, lift=decision.lift, port=port)
    message = (
        f'blocked by policy "{decision.profile}" (rule {decision.rule}): {decision.reason}; '
        f"a Worker would get: {worker_text.workers_message}; to allow it: {decision.lift}"
    )
    raise PolicyError(message, rule=decision.rule, lift=decision.lift, target=target, port=port,
                      address=decision.address)


__all__ = [
    "CLOUD_METADATA_ADDRESSES",
    "CLOUD_METADATA_NAMES",
    "LOOPBACK_NAMES",
    "Decision",
    "Policy",
    "Profile",
    "blocked_ranges",
    "cloudflare_ranges",
    "embedded_ipv4",
    "raise_for",
    "show",
]
