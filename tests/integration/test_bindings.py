"""``--policy bindings``: only the configuration file's targets are reachable, as a Worker
reaches only what its VPC Services bindings name; everything else is refused before any
packet, with the rule named."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import run_cli
from tests.support.peers import echo, serve


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_a_declared_target_is_reached_and_nothing_else(tmp_path: Path) -> None:
    with serve(echo) as server, serve(echo) as other:
        config = write_config(tmp_path, f'[targets.cache]\naddress = "{server.address}"\n')
        reached = run_cli("connect", "@cache", "--config", config, "--policy", "bindings",
                          stdin=b"bound\n")
        direct = run_cli("connect", server.address, "--config", config,
                         "--policy", "bindings", stdin=b"same address\n")
        refused = run_cli("connect", other.address, "--config", config,
                          "--policy", "bindings", stdin=b"x")
    assert reached.returncode == 0, reached.stderr
    assert reached.stdout == b"bound\n"
    assert direct.returncode == 0 and direct.stdout == b"same address\n"
    assert refused.returncode == 3
    assert b"rule not-a-binding" in refused.stderr
    assert server.address.encode() in refused.stderr  # what is declared, named


def test_bindings_without_targets_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli("connect", "127.0.0.1:9", "--no-config", "--policy", "bindings")
    assert proc.returncode == 2
    assert b"reaches only the configuration file's [targets.NAME]" in proc.stderr


def test_the_policy_can_come_from_the_file(tmp_path: Path) -> None:
    with serve(echo) as server:
        config = write_config(tmp_path, f'policy = "bindings"\n[targets.svc]\n'
                                        f'address = "{server.address}"\n')
        probe = run_cli("probe", "127.0.0.1", "-p", f"{server.port},9", "--config", config)
    assert probe.returncode == 0, probe.stderr
    text = probe.stdout.decode()
    assert "open" in text and "blocked" in text


def test_config_check_refuses_two_targets_through_one_entry_point(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[targets.a]\naddress = "a.internal:5432"\n'
                                    'via = "127.0.0.1:15432"\n'
                                    '[targets.b]\naddress = "b.internal:5432"\n'
                                    'via = "127.0.0.1:15432"\n')
    proc = run_cli("config", "check", "--config", config)
    assert proc.returncode == 2
    assert b"targets a (a.internal:5432) and b (b.internal:5432) go through the same " \
           b"entry point 127.0.0.1:15432" in proc.stderr
