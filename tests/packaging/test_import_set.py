"""A run imports only what it needs: which modules a command loads is a fact, not a
timing, so pinning it cannot flake and catches the import that would slow every start.

Each command runs in a fresh interpreter with ``-X importtime``, whose report names every
module imported and, by its nesting, who imported it. asyncio itself imports ssl (its
TLS transports), so for ssl the fact pinned is that no tcpcli module is what loads it.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from tcpcli.cli.main import COMMANDS, cli
from tests.support.peers import recv_all, serve

pytestmark = pytest.mark.timeout(120)

#: Never on a plaintext run: TLS, DNS, Rich, the STARTTLS dialogues and banner parsers.
PLAINTEXT_NEVER = ("cryptography", "certifi", "dns", "rich", "importlib.resources",
                   "tcpcli.core.tls", "tcpcli.core.tlscontext", "tcpcli.core.tlsverify",
                   "tcpcli.core.certs", "tcpcli.core.starttls", "tcpcli.protocols.base",
                   "tcpcli.protocols.registry", "tcpcli.protocols.banner")
#: The one part of tcpcli.protocols the core needs: the exception tree it shares.
PROTOCOLS_ALLOWED = {"tcpcli.protocols", "tcpcli.protocols.errors"}
#: Never for --help: nothing that dials, renders or runs a loop.
HELP_NEVER = ("anyio", "asyncio", "ssl", "rich", "dns", "cryptography", "tcpcli.core",
              "tcpcli.engines", "tcpcli.protocols", "tcpcli.render")
#: Nor, for --help, what a run needs and declaring a command does not: the configuration
#: file's machinery (pathlib, tomllib, its checker and dataclasses), CommonOptions, and the
#: standard modules a command uses only once it runs. (Under an editable install the
#: interpreter's start-up may load pathlib before tcpcli: then this pins nothing for it.)
HELP_NEVER_EITHER = ("tcpcli.cli.configcontext", "tcpcli.cli.configfile",
                     "tcpcli.cli.configcheck", "tcpcli.cli.configmodel",
                     "tcpcli.cli.configreport", "tcpcli.cli.commonoptions", "pathlib",
                     "tomllib", "shutil", "socket", "csv", "json", "tempfile", "argparse")
#: The modules that declare commands: all of tcpcli a command's --help may import.
DECLARING = frozenset({
    "tcpcli", "tcpcli.cli", "tcpcli.cli.main", "tcpcli.cli.collector", "tcpcli.cli.environment",
    "tcpcli.cli.exit_codes", "tcpcli.cli.runner", "tcpcli.cli.helpformat",
    "tcpcli.cli.options", "tcpcli.cli.sharedoptions", "tcpcli.cli.paramtypes",
    "tcpcli.cli.configoptions", "tcpcli.cli.configlocation", "tcpcli.cli.throughput",
    "tcpcli.cli.arguments", "tcpcli.cli.expectations", "tcpcli.record", "tcpcli.xdg",
    *(entry.target.partition(":")[0] for entry in COMMANDS.values())})


@dataclass
class Imports:
    parent: dict[str, str]  # module -> the module whose import loaded it ("" at top)

    def loaded(self, prefix: str) -> list[str]:
        return sorted(m for m in self.parent if m == prefix or m.startswith(prefix + "."))


def imports_of(*args: str, env: dict[str, str] | None = None) -> Imports:
    """The modules ``tcpcli ARGS`` imports, with stdin empty and stdout a pipe."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tcpcli", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [(len(m[1]) // 2, m[2]) for m in
            re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|( *)(\S+)$", proc.stderr, re.M)]
    # What the interpreter's start-up (site, and any .pth hooks of this environment)
    # imports is no choice of tcpcli's: it is all reported before the "site" row.
    rows = rows[next(i for i, (d, n) in enumerate(rows) if (d, n) == (0, "site")) + 1:]
    parent: dict[str, str] = {}
    for index, (depth, name) in enumerate(rows):
        # importtime prints a module after the ones it imported: its importer comes later.
        parent.setdefault(name, next((n for d, n in rows[index + 1:] if d < depth), ""))
    assert "tcpcli.cli.main" in parent, proc.stderr[-2000:]
    return Imports(parent)


@pytest.fixture(scope="module")
def peer() -> Iterator[int]:
    """A loopback peer that takes each connection and closes it after reading EOF."""
    with serve(recv_all) as server:
        yield server.port


def assert_plaintext(imports: Imports) -> None:
    for name in PLAINTEXT_NEVER:
        assert not imports.loaded(name), f"imported {imports.loaded(name)}"
    assert set(imports.loaded("tcpcli.protocols")) <= PROTOCOLS_ALLOWED
    if "ssl" in imports.parent:
        assert not imports.parent["ssl"].startswith("tcpcli"), imports.parent["ssl"]
    assert not imports.loaded("trio"), "anyio runs on asyncio only"


def test_plain_connect_imports_no_tls_dns_rich_or_dialogues(peer: int) -> None:
    assert_plaintext(imports_of("connect", f"127.0.0.1:{peer}", "--allow", "127.0.0.1"))


#: A plain connect to an address known without DNS starts no event loop (core.blocking):
#: anyio and asyncio, the async Socket and its streams stay unloaded.
LOOP_FREE_NEVER = ("asyncio", "anyio",
                   "typing_extensions", "tcpcli.core.socket", "tcpcli.core.rawstream",
                   "tcpcli.render")


@pytest.mark.parametrize("target", ["127.0.0.1", "localhost"])
def test_a_plain_connect_starts_no_event_loop(peer: int, target: str) -> None:
    imports = imports_of("connect", f"{target}:{peer}", "--allow", target, "-4")
    for name in LOOP_FREE_NEVER:
        assert not imports.loaded(name), f"imported {imports.loaded(name)}"


def test_probe_of_one_port_imports_no_tls_dns_rich_or_dialogues(peer: int) -> None:
    assert_plaintext(imports_of("probe", "127.0.0.1", "--ports", str(peer),
                                "--allow", "127.0.0.1"))


@pytest.mark.parametrize("target", ["127.0.0.1", "127.0.0.0/30"])
def test_a_plain_probe_of_addresses_starts_no_event_loop(peer: int, target: str) -> None:
    imports = imports_of("probe", target, "--ports", str(peer), "--allow", "127.0.0.0/8")
    for name in LOOP_FREE_NEVER:
        if name != "tcpcli.render":  # (probe renders its rows and events)
            assert not imports.loaded(name), f"imported {imports.loaded(name)}"


def test_a_small_probe_imports_no_forking(peer: int) -> None:
    """One process is enough for a few ports: the forking and its pickles stay unloaded."""
    imports = imports_of("probe", "127.0.0.1", "--ports", str(peer), "--allow", "127.0.0.1")
    for name in ("tcpcli.engines.scan_shards", "pickle"):
        assert not imports.loaded(name), f"imported {imports.loaded(name)}"


def test_a_plain_connect_bench_starts_no_event_loop(peer: int) -> None:
    imports = imports_of("bench", f"127.0.0.1:{peer}", "-n", "1", "--allow", "127.0.0.1")
    assert_plaintext(imports)
    for name in LOOP_FREE_NEVER:
        if name != "tcpcli.render":  # (bench renders its report)
            assert not imports.loaded(name), f"imported {imports.loaded(name)}"


def test_listing_the_commands_imports_none_of_them() -> None:
    imports = imports_of("--help")
    assert imports.loaded("tcpcli") == ["tcpcli", "tcpcli.cli", "tcpcli.cli.collector",
                                        "tcpcli.cli.environment", "tcpcli.cli.main"]
    for name in HELP_NEVER:
        assert not imports.loaded(name), f"imported {imports.loaded(name)}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_commands_help_imports_nothing_that_runs(command: str) -> None:
    imports = imports_of(command, "--help")
    others = {COMMANDS[name].target.partition(":")[0] for name in COMMANDS} - {
        COMMANDS[command].target.partition(":")[0]}
    for name in (*HELP_NEVER, *HELP_NEVER_EITHER):
        assert not imports.loaded(name), f"imported {imports.loaded(name)}"
    assert not others & set(imports.parent)  # (bench and starttls share cli.arguments)
    assert set(imports.loaded("tcpcli")) <= DECLARING, set(imports.loaded("tcpcli")) - DECLARING


def home_with_config(home: Path, text: str | None) -> dict[str, str]:
    """The environment of a user whose HOME is ``home``: with ``text`` in its default
    configuration file, or none."""
    if text is not None:
        path = home / ".config" / "tcpcli" / "config.toml"
        path.parent.mkdir(parents=True)
        path.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("TCPCLI_CONFIG", "XDG_CONFIG_HOME")}
    return {**env, "HOME": str(home)}


@pytest.fixture(scope="module")
def trusted(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A server context with a throwaway CA's certificate for 127.0.0.1, and the CA file
    that verifies it."""
    import trustme

    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = str(tmp_path_factory.mktemp("ca") / "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    return context, ca_file


@pytest.fixture(scope="module")
def tls_peer(trusted: tuple[ssl.SSLContext, str]) -> Iterator[tuple[int, str]]:
    """A loopback TLS peer that reads to EOF, and the CA file that verifies it."""
    context, ca_file = trusted
    with serve(recv_all, ssl_context=context) as server:
        yield server.port, ca_file


@pytest.fixture(scope="module")
def smtp_peer(trusted: tuple[ssl.SSLContext, str]) -> Iterator[tuple[int, str]]:
    """A loopback SMTP peer that offers STARTTLS, and the CA file that verifies it."""
    from tests.integration.test_cli_starttls import smtp_server

    context, ca_file = trusted
    with serve(smtp_server(context)) as server:
        yield server.port, ca_file


#: What only a verdict reached outside OpenSSL (or a report of an unusual chain) needs.
REPORT_ONLY = ("cryptography", "tcpcli.core.certs", "tcpcli.core.tlsverify")


def test_a_verified_tls_connect_builds_no_report(tls_peer: tuple[int, str]) -> None:
    """OpenSSL verifies in the handshake and nothing shows the report: no cryptography."""
    port, ca_file = tls_peer
    imports = imports_of("connect", f"127.0.0.1:{port}", "--tls", "--ca-file", ca_file,
                         "--allow", "127.0.0.1")
    assert imports.loaded("tcpcli.core.tlssession")  # (it did speak TLS)
    for name in REPORT_ONLY:
        assert not imports.loaded(name), f"imported {imports.loaded(name)}"


@pytest.mark.parametrize("extra", [["-v"], ["--json"]])
def test_a_tls_connect_that_shows_a_report_reads_it_without_cryptography(
        tls_peer: tuple[int, str], extra: list[str]) -> None:
    """The report of a chain OpenSSL verified is read from the DER (tcpcli.core.dercert):
    cryptography stays unloaded (tests/integration/test_tls_report_paths.py shows that
    the report is the same as cryptography's)."""
    port, ca_file = tls_peer
    imports = imports_of("connect", f"127.0.0.1:{port}", "--tls", "--ca-file", ca_file,
                         "--allow", "127.0.0.1", *extra)
    assert imports.loaded("tcpcli.core.dercert")
    for name in REPORT_ONLY:
        assert not imports.loaded(name), f"imported {imports.loaded(name)}"


def test_an_insecure_tls_connect_reaches_its_verdict_with_cryptography(
        tls_peer: tuple[int, str]) -> None:
    port, ca_file = tls_peer
    imports = imports_of("connect", f"127.0.0.1:{port}", "--tls", "--ca-file", ca_file,
                         "--allow", "127.0.0.1", "-k")
    assert imports.loaded("cryptography.x509")


@pytest.mark.parametrize("protocol", [["-P", "smtp"], []], ids=["named", "auto"])
def test_a_starttls_run_starts_no_event_loop(smtp_peer: tuple[int, str],
                                             protocol: list[str]) -> None:
    """``starttls`` to an address known without DNS runs without an event loop
    (core.blockingstarttls), of the dialogues loads only the one it speaks, and builds its
    report of a verified chain without cryptography (core.dercert)."""
    from tcpcli.protocols.registry import _EXPORTS

    port, ca_file = smtp_peer
    imports = imports_of("starttls", f"127.0.0.1:{port}", *protocol, "--ca-file", ca_file,
                         "--allow", "127.0.0.1")
    assert imports.loaded("tcpcli.core.blockingstarttls")
    for name in (*LOOP_FREE_NEVER, "tcpcli.core.starttls", *REPORT_ONLY):
        if name != "tcpcli.render":  # (starttls renders its report)
            assert not imports.loaded(name), f"imported {imports.loaded(name)}"
    dialogues = set(_EXPORTS.values())
    assert dialogues & set(imports.parent) == {"tcpcli.protocols.smtp"}


def test_a_run_without_a_configuration_file_loads_none_of_its_machinery(
        peer: int, tmp_path: Path) -> None:
    imports = imports_of("connect", f"127.0.0.1:{peer}", "--allow", "127.0.0.1",
                         env=home_with_config(tmp_path, None))
    for name in ("tcpcli.cli.configcontext", "tcpcli.cli.configfile", "tomllib"):
        assert not imports.loaded(name), f"imported {imports.loaded(name)}"


def test_a_run_with_a_configuration_file_reads_it(peer: int, tmp_path: Path) -> None:
    imports = imports_of("connect", f"127.0.0.1:{peer}",
                         env=home_with_config(tmp_path, 'allow = ["127.0.0.1"]\n'))
    assert imports.loaded("tomllib") and imports.loaded("tcpcli.cli.configcontext")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_summary_is_the_commands_own(name: str) -> None:
    """``tcpcli --help`` lists summaries from the COMMANDS table; each must be what the
    command says of itself (its short_help), or the list would drift from the pages."""
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert COMMANDS[name].summary == command.get_short_help_str(limit=200)
