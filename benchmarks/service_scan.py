#!/usr/bin/env python3
"""``tcpcli probe --banner --tls-detect`` against ``nmap -sV`` on the same real servers.

The servers are Debian's packages, started by the fixtures of tests/realservers with
throwaway configuration: sshd, redis-server (with and without a password), mosquitto,
PostgreSQL, MariaDB, slapd, Dovecot (IMAP, POP3, ManageSieve, LMTP), Postfix, vsftpd,
INN's nnrpd, Prosody (client and server ports), InspIRCd, Python's http.server and
``openssl s_server -www``. Two layouts: every server on its standard port (run it in a
loopback-only namespace, where those ports are free: ``tests/support/isolated``), and
every server on a free port, where a port's number says nothing.

Each round runs both tools once per layout, in a shuffled order, and times each whole
run. The report says, per layout: each tool's median wall time and the ratio (goal
<= 0.2), how many servers each named the product of, on how many they named the same
product, and on how many tcpcli found STARTTLS (nmap -sV has no STARTTLS: it reports a
TLS port as "ssl/..." and a STARTTLS one as plaintext). ``--json`` prints it as one object.

    tests/support/isolated python benchmarks/service_scan.py --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import statistics
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from measure import run_child, tcpcli_command

REPOSITORY = Path(__file__).resolve().parents[1]

#: (server, listener) -> its standard port. The fixture's name is start_<server>.
STANDARD = {
    ("sshd", "ssh"): 22, ("redis", "redis"): 6379, ("redis-auth", "redis"): 6380,
    ("mosquitto", "mqtt"): 1883, ("postgres", "postgres"): 5432, ("mariadb", "mysql"): 3306,
    ("slapd", "ldap"): 389, ("dovecot", "imap"): 143, ("dovecot", "pop3"): 110,
    ("dovecot", "sieve"): 4190, ("dovecot", "lmtp"): 24, ("postfix", "smtp"): 25,
    ("vsftpd", "ftp"): 21, ("inn", "nntp"): 119, ("prosody", "xmpp"): 5222,
    ("prosody", "xmpp-server"): 5269, ("inspircd", "irc"): 6667, ("http", "http"): 80,
    ("tls_peer", "tls"): 443,
}
SERVERS = tuple(dict.fromkeys(server for server, _ in STANDARD))
LAYOUTS = ("standard", "free")


@dataclass
class Named:
    """What one tool said about one listener."""

    name: str | None = None
    product: str | None = None
    version: str | None = None
    starttls: bool = False
    tunnel: str | None = None


@dataclass
class LayoutResult:
    layout: str
    listeners: int
    seconds: dict[str, list[float]] = field(default_factory=lambda: {"tcpcli": [], "nmap": []})
    #: "server/listener" -> tool -> what it said (the last round's)
    said: dict[str, dict[str, Named]] = field(default_factory=dict)
    note: str = ""

    def median(self, tool: str) -> float | None:
        return statistics.median(self.seconds[tool]) if self.seconds[tool] else None

    def counts(self) -> dict[str, int]:
        tcpcli = [said["tcpcli"] for said in self.said.values()]
        nmap = [said.get("nmap", Named()) for said in self.said.values()]
        return {
            "listeners": self.listeners,
            "tcpcli_products": sum(1 for n in tcpcli if n.product),
            "nmap_products": sum(1 for n in nmap if n.product),
            "same_product": sum(1 for said in self.said.values()
                                if same_product(said["tcpcli"], said.get("nmap", Named()))),
            "nmap_only": sum(1 for said in self.said.values()
                             if said.get("nmap", Named()).product and not said["tcpcli"].product),
            "tcpcli_starttls": sum(1 for n in tcpcli if n.starttls),
            "nmap_ssl": sum(1 for n in nmap if n.tunnel == "ssl"),
        }


def _squash(text: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", (text or "").lower())


def same_product(ours: Named, theirs: Named) -> bool:
    """Both named a product, and the same one: one's name found in the other's words
    (nmap says "Dovecot imapd", "MySQL" with "...-MariaDB-..." as the version)."""
    if not ours.product or not theirs.product:
        return False
    mine = _squash(ours.product)
    their = _squash(f"{theirs.product} {theirs.version or ''}")
    return bool(mine) and (mine in their or _squash(theirs.product) in mine)


# --------------------------------------------------------------------------- servers


@contextlib.contextmanager
def servers(layout: str, only: set[str]) -> Iterator[tuple[dict[str, int], str]]:
    """Every server of the layout started (those that cannot start are left out, and said
    so): ``"server/listener" -> port``, and the note."""
    sys.path.insert(0, str(REPOSITORY))
    import trustme
    from _pytest.outcomes import OutcomeException

    from tests.realservers import conftest as real

    starters: dict[str, Callable[..., Any]] = {
        "sshd": real.start_sshd, "redis": real.start_redis,
        "redis-auth": lambda files, ports: real.start_redis(files, ports,
                                                            password="tcpcli-bench-only"),
        "mosquitto": real.start_mosquitto, "postgres": real.start_postgres,
        "mariadb": real.start_mariadb, "slapd": real.start_slapd,
        "dovecot": real.start_dovecot, "postfix": real.start_postfix,
        "vsftpd": real.start_vsftpd, "inn": real.start_inn, "prosody": real.start_prosody,
        "inspircd": real.start_inspircd, "http": real.start_http,
        "tls_peer": real.start_tls_peer,
    }
    missing: list[str] = []
    ports: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        files = stack.enter_context(real.make_server_files(trustme.CA()))
        for server in SERVERS:
            if only and server not in only:
                continue
            wanted = ({listener: port for (name, listener), port in STANDARD.items()
                       if name == server} if layout == "standard" else None)
            try:
                started = stack.enter_context(starters[server](files, wanted))
            except OutcomeException as exc:  # not installed, or did not start
                missing.append(f"{server}: {str(exc).splitlines()[0][:80]}")
                continue
            for listener, port in started.ports.items():
                ports[f"{server}/{listener}"] = port
        note = f"not started: {'; '.join(missing)}" if missing else ""
        yield ports, note


# --------------------------------------------------------------------------- the tools


def run_tcpcli(ports: dict[str, int]) -> tuple[float, dict[str, Named]]:
    by_port = {port: key for key, port in ports.items()}
    child = run_child([*tcpcli_command(), "probe", "127.0.0.1", "-p",
                       ",".join(map(str, sorted(by_port))), "--policy", "open",
                       "--max-sockets", "unlimited", "--banner", "--tls-detect", "--json"],
                      timeout=300).check("tcpcli probe --banner --tls-detect")
    said: dict[str, Named] = {}
    for line in child.stdout.splitlines():
        event = json.loads(line)
        if event.get("event") != "probe_result" or event["port"] not in by_port:
            continue
        service = event.get("service") or {}
        tls = event.get("tls") or {}
        said[by_port[event["port"]]] = Named(
            service.get("name"), service.get("product"), service.get("version"),
            starttls=tls.get("mode") == "starttls", tunnel=service.get("tunnel"))
    return child.seconds, said


def run_nmap(ports: dict[str, int]) -> tuple[float, dict[str, Named]]:
    by_port = {port: key for key, port in ports.items()}
    child = run_child(["nmap", "-sV", "-Pn", "-n", "-p", ",".join(map(str, sorted(by_port))),
                       "127.0.0.1", "-oX", "-"], timeout=1200).check("nmap -sV")
    said: dict[str, Named] = {}
    for port in ET.fromstring(child.stdout).iter("port"):
        key = by_port.get(int(port.get("portid", "0")))
        service = port.find("service")
        if key is None or service is None:
            continue
        name, product = service.get("name"), service.get("product")
        if name and " " in name and not product:
            # A version script's finding in the name column: mqtt-subscribe reads
            # $SYS/broker/version and reports "mosquitto version 2.0.11" as the service.
            product, name = name, None
        said[key] = Named(None if name == "unknown" else name, product,
                          service.get("version"), tunnel=service.get("tunnel"))
    return child.seconds, said


def measure(layout: str, rounds: int, only: set[str], with_nmap: bool) -> LayoutResult:
    with servers(layout, only) as (ports, note):
        result = LayoutResult(layout, len(ports), note=note)
        tools: dict[str, Callable[[dict[str, int]], tuple[float, dict[str, Named]]]] = {
            "tcpcli": run_tcpcli}
        if with_nmap:
            tools["nmap"] = run_nmap
        for _ in range(rounds):
            order = list(tools)
            random.shuffle(order)
            for tool in order:
                seconds, said = tools[tool](ports)
                result.seconds[tool].append(seconds)
                for key in ports:
                    result.said.setdefault(key, {})[tool] = said.get(key, Named())
    return result


# --------------------------------------------------------------------------- report


def words(named: Named) -> str:
    text = " ".join(part for part in (named.product, named.version) if part)
    service = f"{named.tunnel}/{named.name}" if named.tunnel and named.name else named.name
    return f"{service or '?'}: {text}" if text else (service or "—")


def detail_table(result: LayoutResult) -> str:
    """Per listener: what each tool named, and whether tcpcli found STARTTLS."""
    lines = [f"| {result.layout} ports | tcpcli | `nmap -sV` | STARTTLS (tcpcli) |",
             "|---|---|---|---|"]
    for key, said in result.said.items():
        ours, theirs = said["tcpcli"], said.get("nmap", Named())
        lines.append(f"| {key} | {words(ours)} | {words(theirs)} | "
                     f"{'yes' if ours.starttls else ''} |")
    return "\n".join(lines)


def summary_line(result: LayoutResult) -> str:
    counts = result.counts()
    ours, theirs = result.median("tcpcli"), result.median("nmap")
    ratio = f"{ours / theirs:.3f}" if ours and theirs else "—"
    return (f"{result.layout}: {counts['listeners']} listeners; products named: tcpcli "
            f"{counts['tcpcli_products']}, nmap {counts['nmap_products']}, the same "
            f"{counts['same_product']} (nmap alone: {counts['nmap_only']}); STARTTLS found "
            f"by tcpcli on {counts['tcpcli_starttls']} (nmap -sV reports none; 'ssl/' on "
            f"{counts['nmap_ssl']}); median wall time tcpcli {ours or 0:.2f} s, nmap "
            f"{theirs or 0:.2f} s, tcpcli/nmap median ratio {ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layouts", default=",".join(LAYOUTS),
                        help="standard (needs a namespace of its own), free, or both")
    parser.add_argument("--servers", default="", help="only these, e.g. sshd,redis")
    parser.add_argument("--no-nmap", action="store_true", help="tcpcli alone")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    layouts = [layout for layout in args.layouts.split(",") if layout]
    unknown = set(layouts) - set(LAYOUTS)
    if unknown:
        parser.error(f"unknown layout(s) {sorted(unknown)}")
    only = {server for server in args.servers.split(",") if server}
    with_nmap = not args.no_nmap and shutil.which("nmap") is not None
    results = [measure(layout, args.rounds, only, with_nmap) for layout in layouts]
    if args.json:
        print(json.dumps({"layouts": [{
            "layout": r.layout, "seconds": r.seconds, "counts": r.counts(), "note": r.note,
            "said": {key: {tool: asdict(named) for tool, named in said.items()}
                     for key, said in r.said.items()},
            "table": detail_table(r)} for r in results]}))
        return 0
    for result in results:
        print(summary_line(result))
        if result.note:
            print(f"  {result.note}")
    for result in results:
        print()
        print(detail_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
