"""The options every command shares, declared once: flags, types, environment variables, help.

:func:`tcpcli.cli.options.common_options` puts them on a command (with ``--config``); the
configuration file's checker (:mod:`tcpcli.cli.configcheck`) reads them here to know its
top-level keys. Declaring them below both keeps the file's rules free of any command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from tcpcli.cli.helpformat import OUTPUT, PROXY, TARGET_AND_POLICY, TIMING, TLS, option
from tcpcli.cli.paramtypes import (
    ALPN,
    DURATION,
    MAX_SOCKETS,
    PIN,
    PROXY_URL,
    RESOLVER,
    SOURCE_ADDRESS,
    TLS_VERSION,
    PolicyEntry,
    Text,
)

F = TypeVar("F", bound=Callable[..., Any])

POLICIES = ("workers", "workers-strict", "open", "bindings")


def add_shared_options(func: F) -> F:
    """Attach the shared options (policy, limits, network, TLS, output) to ``func``."""
    options = [
        option("--policy", type=click.Choice(POLICIES), default="workers", metavar="PROFILE",
               envvar="TCPCLI_POLICY", show_default=True, section=TARGET_AND_POLICY,
               help="Destination policy: workers (what a Worker may reach), "
                    "workers-strict, open, or bindings (only the configuration file's "
                    "targets)."),
        option("--allow", multiple=True, envvar="TCPCLI_ALLOW", metavar="ENTRY",
               type=PolicyEntry("allow"), section=TARGET_AND_POLICY,
               help="Allow a host, *.suffix, IP, CIDR or port:N despite the profile."),
        option("--deny", multiple=True, envvar="TCPCLI_DENY", metavar="ENTRY",
               type=PolicyEntry("deny"), section=TARGET_AND_POLICY,
               help="Deny a host, *.suffix, IP, CIDR or port:N (beats --allow)."),
        option("--max-sockets", type=MAX_SOCKETS, default="6", envvar="TCPCLI_MAX_SOCKETS",
               metavar="N",
               show_default=True, section=TARGET_AND_POLICY,
               help="Simultaneous sockets (the Workers limit is 6; 'unlimited' lifts it)."),
        option("-4", "ipv4", is_flag=True, section=TARGET_AND_POLICY, help="IPv4 only."),
        option("-6", "ipv6", is_flag=True, section=TARGET_AND_POLICY, help="IPv6 only."),
        option("--resolver", envvar="TCPCLI_RESOLVER", metavar="IP[:PORT]", type=RESOLVER,
               section=TARGET_AND_POLICY,
               help="Ask this DNS server instead of the system's (comma-separated: several)."),
        option("--source", envvar="TCPCLI_SOURCE", metavar="ADDRESS", type=SOURCE_ADDRESS,
               section=TARGET_AND_POLICY, help="Local IP address to connect from."),
        option("--timeout", type=DURATION, default=None, envvar="TCPCLI_TIMEOUT",
               metavar="SECONDS", section=TIMING,
               help="Give up connecting (resolve, queue, dial, TLS), or waiting for "
                    "a STARTTLS reply, after this long (default: no limit on "
                    "connecting; 10 s for a TLS handshake or a STARTTLS reply)."),
        option("--proxy", envvar="TCPCLI_PROXY", metavar="URL", type=PROXY_URL, section=PROXY,
               help="Go through a socks5://, socks4:// or http:// (CONNECT) proxy: "
                    "SCHEME://HOST:PORT; a chain as URL,URL (each through the one before)."),
        option("--tls/--no-tls", default=False, section=TLS,
               help="Speak TLS from the first byte."),
        option("--sni", metavar="NAME", type=Text("a server name", 253), section=TLS,
               help="Server name for SNI and verification (default: the target host)."),
        option("--no-sni", is_flag=True, section=TLS, help="Send no SNI."),
        option("--alpn", multiple=True, metavar="PROTO", type=ALPN, section=TLS,
               help="Offer this ALPN protocol (repeatable)."),
        option("--tls-min", type=TLS_VERSION, metavar="VERSION", section=TLS,
               help="Lowest TLS version: 1.0, 1.1, 1.2 or 1.3."),
        option("--tls-max", type=TLS_VERSION, metavar="VERSION", section=TLS,
               help="Highest TLS version (at or above --tls-min)."),
        option("--ca-file", type=click.Path(exists=True, dir_okay=False),
               envvar="TCPCLI_CA_FILE", section=TLS,
               help="Trust these CAs instead of certifi's."),
        option("--cert", type=click.Path(exists=True, dir_okay=False), section=TLS,
               help="Client certificate (PEM)."),
        option("--key", type=click.Path(exists=True, dir_okay=False), section=TLS,
               help="Client certificate key (PEM), if not in --cert."),
        option("--insecure/--no-insecure", "-k", default=False, section=TLS,
               help="Report a failed certificate verification but continue."),
        option("--pin", "pins", multiple=True, metavar="sha256/BASE64", type=PIN, section=TLS,
               help="Require this SPKI pin somewhere in the chain."),
        option("-v", "--verbose", count=True, section=OUTPUT,
               help="Show the timing waterfall and TLS report on stderr."),
        option("-q", "--quiet/--no-quiet", default=False, section=OUTPUT,
               help="Print no diagnostics, only errors."),
        option("--json/--no-json", default=False, section=OUTPUT,
               help="JSON Lines events on stderr (schema tcpcli/1)."),
        option("--traceback", is_flag=True, section=OUTPUT,
               help="Show the Python traceback on errors."),
    ]
    for decorate in reversed(options):
        func = decorate(func)
    return func


def shared_parameters() -> list[click.Parameter]:
    """The shared options as click parameters, in declaration order."""
    def placeholder() -> None:  # pragma: no cover - never called
        pass

    params: list[click.Parameter] = getattr(add_shared_options(placeholder),
                                            "__click_params__", [])
    return list(reversed(params))
