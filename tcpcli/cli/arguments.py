"""What the dialing commands' arguments mean, shared without declaring any command: the
TARGET (host:port, [v6]:port or host PORT), ``--send`` text with C escapes, and the
STARTTLS protocol names. (``bench`` and ``starttls`` used to import ``connect`` for these,
building its whole option set on every ``--help``.)"""

from __future__ import annotations

import codecs

import click

#: openssl s_client -starttls's list (the dialogues live in tcpcli.protocols).
STARTTLS_PROTOCOLS = ("smtp", "lmtp", "pop3", "imap", "ftp", "xmpp", "xmpp-server", "telnet",
                      "irc", "mysql", "postgres", "nntp", "sieve", "ldap")


def unescape(text: str) -> bytes:
    r"""``--send`` text with C escapes (\r, \n, \t, \0, \xNN) -> bytes."""
    try:
        decoded: bytes = codecs.escape_decode(text.encode("utf-8"))[0]
        return decoded
    except ValueError as exc:
        raise click.BadParameter(f"bad escape in {text!r}: {exc}", param_hint="--send") from exc


def target_address(target: str, port: int | None) -> str:
    """The command line's target -> the core's address string (IDNA, brackets for IPv6)."""
    from tcpcli.core.address import join_host_port, normalize_host, split_target

    if "%" in target:
        # Workers addresses cannot carry an IPv6 zone id, and a scoped address would leave
        # the policy judging something other than what is dialed.
        raise click.BadParameter(f"{target!r}: IPv6 zone ids (%) are not supported",
                                 param_hint="TARGET")
    try:
        if port is not None:
            host = target[1:-1] if target.startswith("[") and target.endswith("]") else target
        else:
            host, port = split_target(target)
        normalized = normalize_host(host)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint="TARGET") from exc
    # A legacy IPv4 spelling such as 127.1 is passed as the address the OS would dial.
    name = str(normalized.literal) if normalized.literal is not None else normalized.name
    return join_host_port(name, port)
