"""Options shared by every command, and how they become an Invocation and TLS options.

Many options have a ``TCPCLI_*`` environment variable, and every option can be set in the
configuration file (:mod:`tcpcli.cli.configfile`); precedence is flag > environment > config >
default. One decorator (``common_options``) applies them so every command spells them the
same way. Booleans the file can switch on have a ``--no-...`` form to switch them off.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CommonOptions:
    policy: str
    allow: tuple[str, ...]
    deny: tuple[str, ...]
    max_sockets: int | None
    timeout: float | None
    family: int
    resolver: str | None
    proxy: str | None
    source: str | None
    tls: bool
    sni: str | None
    no_sni: bool
    alpn: tuple[str, ...]
    tls_min: str | None
    tls_max: str | None
    ca_file: str | None
    cert: str | None
    key: str | None
    insecure: bool
    pins: tuple[str, ...]
    verbose: int
    quiet: bool
    json: bool
    traceback: bool

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> CommonOptions:
        """Pop the common options out of a command's kwargs.

        Also where the configuration file meets the command line beyond click's default
        map: its allow/deny entries come first and the flags' are added, and a -4/-6
        from the file yields to the other one given as a flag.
        """
        from tcpcli.cli.configfile import check_port, policy_list

        ctx = click.get_current_context(silent=True)
        ipv4, ipv6 = kwargs.pop("ipv4"), kwargs.pop("ipv6")
        if ipv4 and ipv6 and ctx is not None:
            from_file = click.core.ParameterSource.DEFAULT_MAP
            ipv4 = ctx.get_parameter_source("ipv4") is not from_file
            ipv6 = ctx.get_parameter_source("ipv6") is not from_file
        if ipv4 and ipv6:
            raise click.UsageError("-4 and -6 exclude each other")
        check_port(ctx)
        family = socket.AF_INET if ipv4 else socket.AF_INET6 if ipv6 else socket.AF_UNSPEC
        names = [f for f in cls.__dataclass_fields__ if f != "family"]
        values = {name: kwargs.pop(name) for name in names}
        for name in ("allow", "deny"):
            values[name] = tuple(entry for entry, _, _ in policy_list(ctx, name, values[name]))
        return cls(family=family, **values)

    @property
    def reply_timeout(self) -> float:
        """How long a server may take over one reply: a STARTTLS dialogue step, or its
        answer to our TLS ClientHello. --timeout, else the core's 10 s."""
        from tcpcli.core.starttls import REPLY_TIMEOUT

        return self.timeout or REPLY_TIMEOUT

    def tls_options(self) -> Any:
        from tcpcli.core.tlsoptions import TLSOptions  # no cryptography: start-up time

        if self.key and not self.cert:
            raise click.UsageError("--key needs --cert")
        return TLSOptions(
            server_name=self.sni,
            send_sni=not self.no_sni,
            alpn=self.alpn,
            min_version=self.tls_min,  # type: ignore[arg-type]
            max_version=self.tls_max,  # type: ignore[arg-type]
            ca_file=self.ca_file,
            cert_file=self.cert,
            key_file=self.key,
            insecure=self.insecure,
            pins=self.pins,
        )

    def invocation(self, **overrides: Any) -> Any:
        """The Invocation for this run: policy, cap, resolver, default connect options."""
        from tcpcli.core.connect import ConnectOptions
        from tcpcli.core.invocation import Invocation
        from tcpcli.core.policy import Policy
        from tcpcli.core.resolve import resolver_from_option

        try:
            policy = Policy.parse(self.policy, allow=self.allow, deny=self.deny)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--allow/--deny") from exc
        try:
            resolver = resolver_from_option(self.resolver)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--resolver") from exc
        options = ConnectOptions(
            tls=self.tls_options(),
            connect_timeout=self.timeout,
            # Workers puts no limit on a handshake; a diagnostics run must not hang on a
            # server that accepts and never answers our ClientHello.
            tls_handshake_timeout=self.reply_timeout,
            family=self.family,
            local_address=self.source,
            proxy=self.proxy,
        )
        kwargs: dict[str, Any] = {
            "max_sockets": self.max_sockets,
            "policy": policy,
            "resolver": resolver,
            "options": options,
        }
        kwargs.update(overrides)
        return Invocation(**kwargs)


def common_options(func: F) -> F:
    """Attach the shared options (policy, limits, network, TLS, output, configuration file)
    to a command."""
    from tcpcli.cli.configfile import config_options

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
    func = config_options()(func)  # last in --help; the file is read first anyway (eager)
    for option in reversed(options):
        func = option(func)
    return func


def target_argument(name: str = "target", **kwargs: Any) -> Callable[[F], F]:
    """The TARGET argument of a command that dials: ``@NAME`` stands for a target from the
    configuration file (its address, and its options as defaults), and completes as one."""
    from tcpcli.cli.configfile import complete_target, expand_target

    return click.argument(name, callback=expand_target, shell_complete=complete_target,
                          **kwargs)
