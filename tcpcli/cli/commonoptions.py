"""The shared options as one value (:class:`CommonOptions`), and how it becomes an
Invocation and TLS options.

Apart from :mod:`tcpcli.cli.options`, which declares the options: a command imports this
when it runs, so building the command (and its ``--help``) pays for no dataclass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from tcpcli.cli.configlocation import STATE_KEY
from tcpcli.cli.paramtypes import TLS_VERSIONS
from tcpcli.record import Record

if TYPE_CHECKING:
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.tlsoptions import TLSOptions, TLSVersionName


class CommonOptions(Record, frozen=True):
    """The shared options as one value, handed to the engines instead of ~25 keywords.
    (A :class:`~tcpcli.record.Record`: a frozen dataclass of 24 fields costs a
    millisecond of every run's start-up to build, a NamedTuple a third of that.)

    Each value was checked by its type (:mod:`tcpcli.cli.paramtypes`) when click read it;
    what no single option can know (``-4`` with ``-6``, ``--tls-min`` above ``--tls-max``,
    ``--key`` without ``--cert``) is checked in :meth:`from_kwargs`.
    """

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
    tls_min: TLSVersionName | None
    tls_max: TLSVersionName | None
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
    def from_kwargs(cls, kwargs: dict[str, Any]) -> CommonOptions:  # click's values: Any
        """Pop the common options out of a command's kwargs.

        Also where the configuration file meets the command line beyond click's default
        map: its allow/deny entries come first and the flags' are added, and a -4/-6
        from the file yields to the other one given as a flag.
        """
        ctx = click.get_current_context(silent=True)
        ipv4, ipv6 = kwargs.pop("ipv4"), kwargs.pop("ipv6")
        if ipv4 and ipv6 and ctx is not None:
            from_file = click.core.ParameterSource.DEFAULT_MAP
            ipv4 = ctx.get_parameter_source("ipv4") is not from_file
            ipv6 = ctx.get_parameter_source("ipv6") is not from_file
        if ipv4 and ipv6:
            raise click.UsageError("-4 and -6 exclude each other")
        import socket

        family = socket.AF_INET if ipv4 else socket.AF_INET6 if ipv6 else socket.AF_UNSPEC
        names = [f for f in cls.record_fields if f != "family"]
        values = {name: kwargs.pop(name) for name in names}
        values["allow"], values["deny"] = tuple(values["allow"]), tuple(values["deny"])
        if ctx is not None and STATE_KEY in ctx.meta:  # a configuration file was read
            from tcpcli.cli.configcontext import check_port, policy_list

            check_port(ctx)
            for name in ("allow", "deny"):
                values[name] = tuple(entry for entry, _, _ in
                                     policy_list(ctx, name, values[name]))
        tls_min, tls_max = values["tls_min"], values["tls_max"]
        if tls_min and tls_max and TLS_VERSIONS.index(tls_min) > TLS_VERSIONS.index(tls_max):
            raise click.UsageError(f"--tls-min {tls_min} is above --tls-max {tls_max}: give "
                                   "a minimum at or below the maximum", ctx)
        if values["key"] and not values["cert"]:
            raise click.UsageError("--key needs --cert (the certificate the key belongs to)",
                                   ctx)
        return cls(family=family, **values)

    @property
    def reply_timeout(self) -> float:
        """How long a server may take over one reply: a STARTTLS dialogue step, or its
        answer to our TLS ClientHello. --timeout, else the core's 10 s."""
        from tcpcli.core.timing import REPLY_TIMEOUT

        return self.timeout or REPLY_TIMEOUT

    def tls_options(self) -> TLSOptions:
        from tcpcli.core.tlsoptions import TLSOptions  # no cryptography: start-up time

        return TLSOptions(
            server_name=self.sni,
            send_sni=not self.no_sni,
            alpn=self.alpn,
            min_version=self.tls_min,
            max_version=self.tls_max,
            ca_file=self.ca_file,
            cert_file=self.cert,
            key_file=self.key,
            insecure=self.insecure,
            pins=self.pins,
        )

    def invocation(self, **overrides: Any) -> Invocation:  # Invocation's own keywords
        """The Invocation for this run: policy, cap, resolver, default connect options."""
        from tcpcli.core.connect import ConnectOptions
        from tcpcli.core.invocation import Invocation
        from tcpcli.core.policy import Policy
        bindings: list[str] = []
        if self.policy == "bindings":
            from tcpcli.cli.configcontext import declared_targets

            bindings = declared_targets(click.get_current_context(silent=True))
            if not bindings:
                raise click.UsageError("--policy bindings reaches only the configuration "
                                       "file's [targets.NAME], and none is declared")
        try:
            policy = Policy.parse(self.policy, allow=self.allow, deny=self.deny,
                                  bindings=bindings)
        except ValueError as exc:
            hint = "[targets]" if self.policy == "bindings" else "--allow/--deny"
            raise click.BadParameter(str(exc), param_hint=hint) from exc
        resolver = None  # the system's (hosts file, then resolv.conf), made on first use
        if self.resolver is not None:
            from tcpcli.core.resolve import resolver_from_option

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
