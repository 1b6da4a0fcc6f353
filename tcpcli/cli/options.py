"""Options shared by every command, as a command declares them (the values they give are
:class:`tcpcli.cli.commonoptions.CommonOptions`).

Many options have a ``TCPCLI_*`` environment variable, and every option can be set in the
configuration file (:mod:`tcpcli.cli.configfile`); precedence is flag > environment > config >
default. One decorator (``common_options``) applies them so every command spells them the
same way. Booleans the file can switch on have a ``--no-...`` form to switch them off.
The options themselves are declared in :mod:`tcpcli.cli.sharedoptions`, below the
configuration file's checker, which reads them too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tcpcli.cli.configoptions import complete_target, config_options, expand_target
from tcpcli.cli.sharedoptions import add_shared_options

if TYPE_CHECKING:
    from tcpcli.cli.commonoptions import CommonOptions as CommonOptions
    from tcpcli.core.invocation import Invocation

F = TypeVar("F", bound=Callable[..., Any])


def common_options(func: F) -> F:
    """Attach the shared options (policy, limits, network, TLS, output, configuration file)
    to a command."""
    func = config_options()(func)  # last in --help; the file is read first anyway (eager)
    return add_shared_options(func)


def proxy_header_options(func: F) -> F:
    """``--send-proxy`` and ``--proxy-source``: a PROXY protocol header first on the wire,
    as haproxy's send-proxy writes it, for a service behind accept-proxy."""
    from tcpcli.cli.paramtypes import ENDPOINT

    func = click.option(
        "--proxy-source", type=ENDPOINT,
        help="The client address the PROXY header claims (default: this connection's "
             "own).")(func)
    return click.option(
        "--send-proxy", type=click.Choice(["v1", "v2"]), metavar="v1|v2",
        help="Start with a PROXY protocol header (haproxy send-proxy / send-proxy-v2), "
             "before any TLS.")(func)


def with_proxy_header(invocation: Invocation, kwargs: dict[str, Any]) -> None:
    """Pop ``--send-proxy``/``--proxy-source`` from a command's values into the
    invocation's connect options."""
    version, source = kwargs.pop("send_proxy"), kwargs.pop("proxy_source")
    if version is None:
        if source is not None:
            raise click.UsageError("--proxy-source is the address a PROXY header claims: "
                                   "it needs --send-proxy v1 or v2")
        return
    from tcpcli.core.proxyheader import ProxyHeaderSpec
    from tcpcli.record import replace

    spec = ProxyHeaderSpec(1 if version == "v1" else 2, source)
    invocation.options = replace(invocation.options, send_proxy=spec)


def via_option(func: F) -> F:
    """``--via HOST:PORT``: dial a tunnel's local entry point in the target's stead."""
    from tcpcli.cli.paramtypes import ENTRY_POINT

    return click.option(
        "--via", type=ENTRY_POINT,
        help="Dial this local forwarder (cloudflared access tcp, ssh -L, kubectl "
             "port-forward) instead: the target still drives the policy, SNI, "
             "verification and reports; the entry point is allowed for this run.")(func)


def with_via(invocation: Invocation, kwargs: dict[str, Any]) -> None:
    """Pop ``--via`` from a command's values into the invocation's connect options."""
    via = kwargs.pop("via")
    if via is None:
        return
    if invocation.options.proxy:
        raise click.UsageError("--via and --proxy exclude each other: the entry point is "
                               "the way in")
    from tcpcli.record import replace

    invocation.options = replace(invocation.options, via=via)


def target_argument(name: str = "target", **kwargs: Any) -> Callable[[F], F]:
    """The TARGET argument of a command that dials: ``@NAME`` stands for a target from the
    configuration file (its address, and its options as defaults), and completes as one."""
    return click.argument(name, callback=expand_target, shell_complete=complete_target,
                          **kwargs)


def __getattr__(name: str) -> Any:
    """``CommonOptions`` moved to :mod:`tcpcli.cli.commonoptions` (imported when a command
    runs, not when it is declared); the old import still works."""
    if name == "CommonOptions":
        from tcpcli.cli.commonoptions import CommonOptions

        return CommonOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
