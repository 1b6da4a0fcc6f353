"""certifi's bundle as a hashed CA directory: a TLS run reads only the CAs it verifies with.

Loading certifi's ~150 certificates into an ``SSLContext`` (``cafile=``) costs as many
instructions as ``import click`` again (about 20 ms): OpenSSL parses every one of them up
front. In OpenSSL's hashed-directory layout (what ``openssl rehash`` makes, and what
``/etc/ssl/certs`` is) each CA sits in a file named after the hash of its subject, and
verification reads only the files of the issuers a chain names (``capath=``).

The directory is built once per bundle, keyed as a ``.pyc`` is (the bundle's path, size
and modification time), under ``$XDG_CACHE_HOME/tcpcli/trust`` (else ``~/.cache``), and
moved into place whole, so a concurrent run sees all of it or none. Where it cannot be
written the caller loads the bundle whole, as before: same trust, only slower.

The file names are OpenSSL's ``X509_NAME_hash_ex``: the first four bytes (little-endian)
of the SHA-1 of the subject's canonical encoding, in which every string value is
UTF-8, trimmed, with inner white space collapsed to one space and ASCII lower-cased.
``tests/core/test_trustdir.py`` checks every certificate of certifi's bundle against
``openssl x509 -subject_hash``.
"""

from __future__ import annotations

import binascii
import os
import sys
from collections.abc import Mapping

from tcpcli.xdg import base_directory

__all__ = ["certifi_bundle", "hashed_directory", "subject_hash", "trust_source"]

#: Under $XDG_CACHE_HOME (or ~/.cache).
RELATIVE_PATH = os.path.join("tcpcli", "trust")
#: The file remembering ``certifi.where()`` per certifi installation, in the cache root.
WHERE_FILE = "certifi-where"

_PEM = rb"-----BEGIN CERTIFICATE-----\s+(.*?)-----END CERTIFICATE-----"

# ASN.1 tags: the string types OpenSSL canonicalizes (ASN1_MASK_CANON), with the width of
# one character in each (1: ISO 8859-1, 2: UCS-2, 4: UCS-4; 0: already UTF-8).
_UTF8, _PRINTABLE, _T61, _IA5, _VISIBLE, _UNIVERSAL, _BMP = 12, 19, 20, 22, 26, 28, 30
_CANONICAL_WIDTH = {_UTF8: 0, _PRINTABLE: 1, _T61: 1, _IA5: 1, _VISIBLE: 1,
                    _UNIVERSAL: 4, _BMP: 2}
_SEQUENCE, _SET = 0x30, 0x31
_SPACE = b" \t\n\v\f\r"  # ossl_isspace


def trust_source(ca_file: str | None) -> str:
    """The CA file (or directory) trusted: ``--ca-file``, else certifi's bundle."""
    return ca_file or certifi_bundle(os.environ)


def certifi_bundle(environ: Mapping[str, str]) -> str:
    """``certifi.where()``, remembered per certifi installation in the cache.

    Importing certifi loads ``importlib.resources`` (about a tenth of a one-shot TLS run)
    for a path that changes only when certifi does. The import system's own finder locates
    the package without running it; the answer ``where()`` gave for that package (its
    ``__init__.py`` and ``core.py`` by size and time) is read back. Distributions that
    point ``where()`` at the system's bundle are answered as ``where()`` answers.
    """
    key = None if "certifi" in sys.modules else _certifi_key()
    root = _cache_root(environ)
    memo = None if root is None else os.path.join(root, WHERE_FILE)
    if key is not None and memo is not None:
        try:
            with open(memo, encoding="utf-8") as file:
                remembered_key, _, where = file.read().partition("\n")
            if remembered_key == key and os.path.isfile(where):
                return where
        except OSError:
            pass
    import certifi

    where = certifi.where()
    key = key or _certifi_key()
    if key is not None and memo is not None:
        try:
            os.makedirs(root or "", exist_ok=True)
            writing = f"{memo}.{os.getpid()}"
            with open(writing, "w", encoding="utf-8") as file:
                file.write(f"{key}\n{where}")
            os.replace(writing, memo)
        except OSError:
            pass
    return where


def _certifi_key() -> str | None:
    """Which certifi installation the import system would load, without loading it."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("certifi")
    if spec is None or not spec.origin or not spec.origin.endswith("__init__.py"):
        return None  # (a zip, a frozen app: ask certifi itself)
    directory = os.path.dirname(spec.origin)
    parts = []
    for name in ("__init__.py", "core.py"):
        try:
            stat = os.stat(os.path.join(directory, name))
        except OSError:
            return None
        parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
    return "\0".join([directory, *parts])


def hashed_directory(bundle: str, environ: Mapping[str, str]) -> str | None:
    """The hashed directory holding ``bundle``'s certificates, built on first use; None
    when it cannot be (no cache directory, not writable, an unreadable bundle)."""
    try:
        stat = os.stat(bundle)
        root = _cache_root(environ)
        if root is None:
            return None
        # (crc32 names the path: binascii is loaded with ssl, hashlib would not be)
        key = f"{binascii.crc32(os.path.abspath(bundle).encode()):08x}-{stat.st_size}-" \
              f"{stat.st_mtime_ns}"
        directory = os.path.join(root, key)
        if os.path.isdir(directory):
            return directory
        with open(bundle, "rb") as file:
            pem = file.read()
        _build(pem, root, directory)
    except (OSError, ValueError):
        return None
    return directory


def _cache_root(environ: Mapping[str, str]) -> str | None:
    directory, _ = base_directory(environ, "XDG_CACHE_HOME", ".cache")
    # A relative home would put the cache wherever the run happens to start.
    return os.path.join(directory, RELATIVE_PATH) if os.path.isabs(directory) else None


def _build(pem: bytes, root: str, directory: str) -> None:
    """Write every certificate of ``pem`` as ``<hash>.<n>`` into a fresh directory and move
    it to ``directory`` whole; the bundles of earlier keys are removed."""
    import base64
    import re
    import shutil
    import tempfile

    os.makedirs(root, exist_ok=True)
    building = tempfile.mkdtemp(prefix=".building-", dir=root)
    try:
        taken: dict[int, int] = {}
        for match in re.finditer(_PEM, pem, re.S):
            body = match.group(1)
            hashed = subject_hash(base64.b64decode(body))
            suffix = taken.get(hashed, 0)
            taken[hashed] = suffix + 1
            with open(os.path.join(building, f"{hashed:08x}.{suffix}"), "wb") as file:
                file.write(b"-----BEGIN CERTIFICATE-----\n" + body.strip()
                           + b"\n-----END CERTIFICATE-----\n")
        if not taken:
            raise ValueError("no certificate in the bundle")
        try:
            os.rename(building, directory)
        except OSError:
            if not os.path.isdir(directory):  # (else another run finished it first)
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    for name in os.listdir(root):  # an older bundle's directory, or one left half-built
        path = os.path.join(root, name)
        if path != directory and os.path.isdir(path) \
                and (not name.startswith(".") or _stale(path)):
            shutil.rmtree(path, ignore_errors=True)


def _stale(path: str) -> bool:
    """A directory another run was building an hour ago or more: left by a crash."""
    try:
        import time

        return time.time() - os.stat(path).st_mtime > 3600
    except OSError:
        return False


# --------------------------------------------------------------------------- the hash


def subject_hash(certificate: bytes) -> int:
    """OpenSSL's ``X509_subject_name_hash`` of a DER certificate (``openssl x509
    -subject_hash``): the name its file has in a hashed directory."""
    tbs = _children(certificate, _element(certificate, 0))[0]
    fields = _children(certificate, tbs)
    if certificate[fields[0][0]] == 0xA0:  # [0] version: present from v2 on
        fields = fields[1:]
    subject = fields[4]  # serial, signature algorithm, issuer, validity, subject
    canonical = b"".join(_canonical_rdn(certificate, rdn)
                         for rdn in _children(certificate, subject))
    import hashlib  # (only when a directory is built)

    digest = hashlib.sha1(canonical, usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "little")


def _canonical_rdn(der: bytes, rdn: tuple[int, int, int]) -> bytes:
    """One relative distinguished name, canonical: a SET of (type, canonical value)."""
    entries = []
    for entry in _children(der, rdn):
        oid, value = _children(der, entry)
        entries.append(_encode(_SEQUENCE, der[oid[0]:oid[2]] + _canonical_value(der, value)))
    return _encode(_SET, b"".join(sorted(entries)))  # DER sorts a SET OF's elements


def _canonical_value(der: bytes, value: tuple[int, int, int]) -> bytes:
    tag, start, end = der[value[0]], value[1], value[2]
    width = _CANONICAL_WIDTH.get(tag)
    if width is None:  # not a string OpenSSL canonicalizes: kept as it is
        return der[value[0]:end]
    raw = der[start:end]
    if width == 0:
        text = raw
    else:
        codec = {1: "latin-1", 2: "utf-16-be", 4: "utf-32-be"}[width]
        text = raw.decode(codec, errors="surrogatepass").encode("utf-8", "surrogatepass")
    text = text.strip(_SPACE)
    out = bytearray()
    index = 0
    while index < len(text):
        byte = text[index]
        if byte in _SPACE:  # a run of white space becomes one space
            out.append(0x20)
            while index < len(text) and text[index] in _SPACE:
                index += 1
            continue
        out.append(byte + 32 if 0x41 <= byte <= 0x5A else byte)  # ASCII lower case only
        index += 1
    return _encode(_UTF8, bytes(out))


def _children(der: bytes, parent: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """The elements inside a constructed element, each as (tag offset, contents, end)."""
    elements = []
    position = parent[1]
    while position < parent[2]:
        element = _element(der, position)
        if element[2] > parent[2]:
            raise ValueError("DER element overruns its parent")
        elements.append(element)
        position = element[2]
    return elements


def _element(der: bytes, position: int) -> tuple[int, int, int]:
    """(tag offset, contents offset, end offset) of the element at ``position``."""
    if position + 2 > len(der):
        raise ValueError("truncated DER")
    length = der[position + 1]
    contents = position + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or contents + count > len(der):
            raise ValueError("unsupported DER length")
        length = int.from_bytes(der[contents:contents + count], "big")
        contents += count
    end = contents + length
    if end > len(der):
        raise ValueError("truncated DER")
    return position, contents, end


def _encode(tag: int, contents: bytes) -> bytes:
    length = len(contents)
    if length < 0x80:
        return bytes([tag, length]) + contents
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + contents
