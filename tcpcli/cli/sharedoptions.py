"""The options every command shares, declared once: flags, types, environment variables, help.

:func:`tcpcli.cli.options.common_options` puts them on a command (with ``--config``); the
configuration file's checker (:mod:`tcpcli.cli.configcheck`) reads them here to know its
top-level keys. Declaring them below both keeps the file's rules free of any command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
POLICIES = ("workers", "workers-strict", "open")


def _max_sockets(value: str | int | None) -> int | None:
    if value is None:
        return 6
    if isinstance(value, int):
        return value
    if value.lower() in ("none", "unlimited", "0"):
        return None
    if not value.isascii() or not value.isdigit():
        raise click.BadParameter(f"{value!r} is not a number (or 'unlimited')")
    return int(value)


class MaxSockets(click.ParamType):  # type: ignore[type-arg]
    name = "N|unlimited"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | None:
        try:
            return _max_sockets(value)
        except click.BadParameter as exc:
            self.fail(str(exc), param, ctx)


def add_shared_options(func: F) -> F:
    """Attach the shared options (policy, limits, network, TLS, output) to ``func``."""
    options = [
        click.option("--policy", type=click.Choice(POLICIES), default="workers",
                     envvar="TCPCLI_POLICY", show_default=True,
                     help="Destination policy profile (workers = what a Worker may reach)."),
        click.option("--allow", multiple=True, envvar="TCPCLI_ALLOW", metavar="ENTRY",
                     help="Allow a host, *.suffix, IP, CIDR or port:N despite the profile."),
        click.option("--deny", multiple=True, envvar="TCPCLI_DENY", metavar="ENTRY",
                     help="Deny a host, *.suffix, IP, CIDR or port:N (beats --allow)."),
        click.option("--max-sockets", type=MaxSockets(), default="6",
                     envvar="TCPCLI_MAX_SOCKETS", show_default=True,
                     help="Simultaneous sockets (the Workers limit is 6; 'unlimited' lifts it)."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                     envvar="TCPCLI_TIMEOUT", metavar="SECONDS",
                     help="Give up connecting (resolve, queue, dial, TLS), or waiting for "
                          "a STARTTLS reply, after this long (default: no limit on "
                          "connecting; 10 s for a TLS handshake or a STARTTLS reply)."),
        click.option("-4", "ipv4", is_flag=True, help="IPv4 only."),
        click.option("-6", "ipv6", is_flag=True, help="IPv6 only."),
        click.option("--resolver", envvar="TCPCLI_RESOLVER", metavar="IP[:PORT]",
                     help="Ask this DNS server instead of the system's."),
        click.option("--proxy", envvar="TCPCLI_PROXY", metavar="URL",
                     help="Go through a socks5://, socks4:// or http:// (CONNECT) proxy."),
        click.option("--source", envvar="TCPCLI_SOURCE", metavar="ADDRESS",
                     help="Local address to connect from."),
        click.option("--tls/--no-tls", default=False, help="Speak TLS from the first byte."),
        click.option("--sni", metavar="NAME",
                     help="Server name for SNI and verification (default: the target host)."),
        click.option("--no-sni", is_flag=True, help="Send no SNI."),
        click.option("--alpn", multiple=True, metavar="PROTO",
                     help="Offer this ALPN protocol (repeatable)."),
        click.option("--tls-min", type=click.Choice(TLS_VERSIONS), help="Lowest TLS version."),
        click.option("--tls-max", type=click.Choice(TLS_VERSIONS), help="Highest TLS version."),
        click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
                     envvar="TCPCLI_CA_FILE", help="Trust these CAs instead of certifi's."),
        click.option("--cert", type=click.Path(exists=True, dir_okay=False),
                     help="Client certificate (PEM)."),
        click.option("--key", type=click.Path(exists=True, dir_okay=False),
                     help="Client certificate key (PEM), if not in --cert."),
        click.option("--insecure/--no-insecure", "-k", default=False,
                     help="Report a failed certificate verification but continue."),
        click.option("--pin", "pins", multiple=True, metavar="sha256/BASE64",
                     help="Require this SPKI pin somewhere in the chain."),
        click.option("-v", "--verbose", count=True,
                     help="Show the timing waterfall and TLS report on stderr."),
        click.option("-q", "--quiet/--no-quiet", default=False,
                     help="Print no diagnostics, only errors."),
        click.option("--json/--no-json", default=False,
                     help="JSON Lines events on stderr (schema tcpcli/1)."),
        click.option("--traceback", is_flag=True, hidden=False,
                     help="Show the Python traceback on errors."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def shared_parameters() -> list[click.Parameter]:
    """The shared options as click parameters, in declaration order."""
    def placeholder() -> None:  # pragma: no cover - never called
        pass

    params: list[click.Parameter] = getattr(add_shared_options(placeholder),
                                            "__click_params__", [])
    return list(reversed(params))
