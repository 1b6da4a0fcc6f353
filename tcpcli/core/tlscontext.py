"""Client SSL contexts: built from :class:`~tcpcli.core.tlsoptions.TLSOptions`, trusting
certifi's bundle (or ``--ca-file``), and cached per options value.

certifi's bundle is trusted through a hashed directory (:mod:`tcpcli.core.trustdir`), from
which OpenSSL reads only the CAs a chain names; a CA file is loaded whole (~20 ms for a
bundle of certifi's size). Cached because TLS sessions resume only between handshakes
that share a context (bench and ``--resume`` rely on it).
"""

from __future__ import annotations

import functools
import os
import ssl
import warnings

from tcpcli.core.errors import SocketOptionError
from tcpcli.core.tlsoptions import TLSOptions, ip_literal, normalize_name
from tcpcli.core.trustdir import hashed_directory, trust_source

_VERSIONS: dict[str, ssl.TLSVersion] = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}

__all__ = ["client_context", "contexts_built", "handshake_context", "trust_source"]


def client_context(options: TLSOptions, *, hostname: str | None = None) -> ssl.SSLContext:
    """The client SSLContext for ``options``, built once per distinct options value.

    Verification is on (CERT_REQUIRED + check_hostname) unless ``options.insecure`` or
    ``options.pins`` (see ``TLSOptions.verify_in_handshake``). With
    ``send_sni=False`` OpenSSL cannot check the name without also sending it, so that
    context verifies the chain only and :class:`~tcpcli.core.tls.TLSStream` checks the
    name itself. With ``hostname`` it is exactly the context ``TLSStream.wrap()`` uses for
    that name: build it before timing a handshake (loading a trust store takes ~20 ms),
    and know that sessions resume only between handshakes that share it.
    """
    if hostname is None:
        return _context(options, options.verify_in_handshake and options.send_sni,
                        os.environ.get("SSLKEYLOGFILE"))
    return handshake_context(options, normalize_name(options.server_name or hostname))[0]


def contexts_built() -> int:
    """How many client contexts this process has built (each loads a trust store)."""
    return _context.cache_info().misses


def handshake_context(options: TLSOptions, name: str | None) -> (
    tuple[ssl.SSLContext, str | None]
):
    """The context for a handshake with ``name``, and the name handed to OpenSSL.

    Python sends no SNI for IP literals; with ``send_sni=False`` we pass no name at all and
    check it ourselves after the handshake.
    """
    is_ip = name is not None and ip_literal(name) is not None
    server_hostname = name if (options.send_sni or is_ip) else None
    context = _context(options, options.verify_in_handshake and server_hostname is not None,
                       os.environ.get("SSLKEYLOGFILE"))
    return context, server_hostname


@functools.lru_cache(maxsize=32)
def _context(options: TLSOptions, check_hostname: bool, keylog_env: str | None) -> (
    ssl.SSLContext
):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Names are matched against subjectAltName only, as browsers do (no CN fallback).
    context.hostname_checks_common_name = False
    # A peer that closes without close_notify must be visible (TLSStream.truncated).
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if not options.verify_in_handshake:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = check_hostname
    _load_trust(context, options)  # insecure too: a bad --ca-file is an error either way
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated; here they were asked for
        warnings.simplefilter("ignore", DeprecationWarning)
        if options.min_version is not None:
            context.minimum_version = _VERSIONS[options.min_version]
        elif options.max_version in ("1.0", "1.1"):
            context.minimum_version = ssl.TLSVersion.TLSv1  # Python's floor is 1.2: lower it
        if options.max_version is not None:
            context.maximum_version = _VERSIONS[options.max_version]
    if {options.min_version, options.max_version} & {"1.0", "1.1"}:
        # Asking for TLS 1.0/1.1 explicitly: OpenSSL 3's default security level forbids
        # them (and their SHA-1 signatures), which would make the option a no-op.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    if options.alpn:
        context.set_alpn_protocols(list(options.alpn))
    if options.cert_file is not None:
        try:
            context.load_cert_chain(options.cert_file, options.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise SocketOptionError(
                f"cannot load the client certificate {options.cert_file}: {_why(exc)}"
            ) from exc
        context.post_handshake_auth = True
    keylog = options.keylog_file or keylog_env
    if keylog:
        context.keylog_filename = keylog
    if not (options.verify_in_handshake and check_hostname):
        # The verdict (insecure mode, pins) or the name check without SNI is reached after
        # the handshake, with cryptography: loaded now, with the context, and not inside
        # the first timed handshake.
        import tcpcli.core.tlsverify  # noqa: F401
    return context


def _load_trust(context: ssl.SSLContext, options: TLSOptions) -> None:
    source = trust_source(options.ca_file)
    try:
        if options.ca_file is not None and os.path.isdir(options.ca_file):
            context.load_verify_locations(capath=options.ca_file)
        elif options.ca_file is None and (hashed := hashed_directory(source, os.environ)):
            # certifi's bundle, read a CA at a time as verification needs it (trustdir)
            context.load_verify_locations(capath=hashed)
        else:
            context.load_verify_locations(cafile=source)
    except (OSError, ssl.SSLError) as exc:
        raise SocketOptionError(f"cannot load the CA file {source}: {_why(exc)}") from exc
    if options.system_store:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
