"""The configuration file as a user meets it: precedence, @NAME targets over real loopback
sockets, the XDG lookup, and errors that name the file, line and key.

Every test here sets HOME, XDG_CONFIG_HOME and TCPCLI_CONFIG itself, so the developer's own
configuration never leaks in. Commands that only resolve settings run in-process (fast);
the ones that must really connect run the installed CLI as a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.shell_completion import ShellComplete

from tcpcli.cli.environment import Environment
from tcpcli.cli.main import cli, main
from tests.support.cli import run_cli
from tests.support.peers import echo, serve


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME and no configuration or TCPCLI_* variable from the outside."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith("TCPCLI_") or name == "XDG_CONFIG_HOME":
            monkeypatch.delenv(name)
    return home


def write_config(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def tcpcli(*args: str) -> Result:
    """Run tcpcli in this process (click reads os.environ, which the tests set)."""
    env = Environment(stdin=io.BytesIO(), stdout=io.BytesIO(), stderr=io.StringIO(),
                      environ=dict(os.environ))
    with pytest.raises(SystemExit) as exit_:
        main(list(args), obj=env)
    stdout = env.stdout.getvalue().decode()  # type: ignore[attr-defined]
    return Result(int(exit_.value.code or 0), stdout, env.stderr.getvalue())  # type: ignore[attr-defined]


def shown(*args: str) -> dict[str, dict[str, object]]:
    """``tcpcli config show --json ...``: settings by key."""
    result = tcpcli("config", "show", "--json", *args)
    assert result.code == 0, result.stderr
    return {s["key"]: s for s in json.loads(result.stdout)["settings"]}


# -- precedence: flag > env > config > default ----------------------------------------------

#: key -> (what the file says, the environment variable and its value, the flag, and the
#: value each of them gives once click has converted it)
LAYERS = {
    "policy": ('policy = "open"', ("TCPCLI_POLICY", "workers-strict"), ["--policy", "workers"],
               {"default": "workers", "config": "open", "env": "workers-strict",
                "flag": "workers"}),
    "timeout": ("timeout = 5", ("TCPCLI_TIMEOUT", "7"), ["--timeout", "3"],
                {"default": None, "config": 5.0, "env": 7.0, "flag": 3.0}),
}


@pytest.mark.parametrize("key", sorted(LAYERS))
@pytest.mark.parametrize("given", [(), ("config",), ("env",), ("flag",), ("config", "env"),
                                   ("config", "flag"), ("env", "flag"),
                                   ("config", "env", "flag")])
def test_precedence_matrix(key: str, given: tuple[str, ...], tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    line, (variable, env_value), flag, values = LAYERS[key]
    path = write_config(tmp_path / "conf", line + "\n" if "config" in given else "")
    monkeypatch.setenv("TCPCLI_CONFIG", str(path))
    if "env" in given:
        monkeypatch.setenv(variable, env_value)
    setting = shown("connect", *(flag if "flag" in given else []))[key]
    winner = next((layer for layer in ("flag", "env", "config") if layer in given), "default")
    assert (setting["value"], setting["source"]) == (values[winner], winner)
    assert setting["origin"] == {"config": f"{path}:1", "env": variable}.get(winner)


@pytest.mark.parametrize(("given", "value", "source"), [
    ((), [], "default"),
    (("config",), ["10.0.0.0/8"], "config"),
    (("config", "env"), ["10.0.0.0/8", "10.1.1.1"], "config+env"),
    (("config", "flag"), ["10.0.0.0/8", "10.2.2.2"], "config+flag"),
    # The flag replaces the environment variable (as for every option) but not the file.
    (("config", "env", "flag"), ["10.0.0.0/8", "10.2.2.2"], "config+flag"),
])
def test_allow_lists_add_up(given: tuple[str, ...], value: list[str], source: str,
                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, 'allow = ["10.0.0.0/8"]\n' if "config" in given else "")
    monkeypatch.setenv("TCPCLI_CONFIG", str(path))
    if "env" in given:
        monkeypatch.setenv("TCPCLI_ALLOW", "10.1.1.1")
    setting = shown("connect", *(["--allow", "10.2.2.2"] if "flag" in given else []))["allow"]
    assert (setting["value"], setting["source"]) == (value, source)


def test_target_beats_command_table_beats_top_level(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, 'timeout = 9\nsni = "top"\n[connect]\ntimeout = 8\n'
                                  '[targets.db]\naddress = "db:5432"\ntimeout = 7\ntls = true\n')
    monkeypatch.setenv("TCPCLI_CONFIG", str(path))
    plain = shown("connect", "db:5432")
    assert plain["timeout"]["value"] == 8.0 and plain["sni"]["value"] == "top"
    named = shown("connect", "@db")
    assert (named["timeout"]["value"], named["timeout"]["origin"]) == (7.0, f"{path}:7 [targets.db]")
    assert named["tls"]["value"] is True
    # Booleans the file switches on have a flag to switch them off.
    assert shown("connect", "@db", "--no-tls")["tls"] == \
        {"key": "tls", "value": False, "source": "flag", "origin": None}


def test_show_text_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, 'policy = "open"\n\n[targets.db]\naddress = "db:5432"\n'
                                  'starttls = "postgres"\n')
    monkeypatch.setenv("TCPCLI_CONFIG", str(path))
    monkeypatch.setenv("TCPCLI_TIMEOUT", "2.5")
    result = tcpcli("config", "show", "starttls", "@db", "-P", "smtp")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"file: {path} (from $TCPCLI_CONFIG)", "command: tcpcli starttls @db"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if line.startswith("  ")
            and not line.startswith("  (") and line.split()}
    assert rows["protocol"] == ["smtp", "flag"]
    assert rows["policy"] == ["open", "config", f"{path}:1"]
    assert rows["timeout"] == ["2.5", "env", "TCPCLI_TIMEOUT"]
    assert rows["max_sockets"] == ["6", "default"]
    assert f"  @db  db:5432  starttls=postgres  ({path}:3 [targets.db])" in lines
    assert tcpcli("config", "path") == Result(0, f"{path}\n",
                                              "tcpcli: chosen by $TCPCLI_CONFIG\n")
    assert tcpcli("config", "check") == Result(0, f"{path}: ok (1 setting, 1 target)\n", "")


# -- where the file is ----------------------------------------------------------------------


def test_xdg_lookup(isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home_file = write_config(isolated_home / ".config" / "tcpcli", 'policy = "open"\n')
    assert tcpcli("config", "path").stdout == f"{home_file}\n"
    assert shown()["policy"]["origin"] == f"{home_file}:1"

    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    missing = tcpcli("config", "path")  # a missing default file is fine: the defaults apply
    assert missing == Result(0, f"{xdg / 'tcpcli' / 'config.toml'}\n",
                             "tcpcli: chosen by $XDG_CONFIG_HOME; it does not exist, so the "
                             "defaults apply\n")
    assert shown()["policy"]["source"] == "default"
    xdg_file = write_config(xdg / "tcpcli", 'policy = "workers-strict"\n')
    assert shown()["policy"]["origin"] == f"{xdg_file}:1"

    named = write_config(tmp_path / "named", 'policy = "open"\n')
    monkeypatch.setenv("TCPCLI_CONFIG", str(named))
    assert shown()["policy"]["origin"] == f"{named}:1"
    flag = write_config(tmp_path / "flag", "timeout = 1\n")
    assert shown("--config", str(flag))["policy"]["source"] == "default"  # --config beats env
    assert shown("--no-config")["policy"]["source"] == "default"
    assert tcpcli("config", "show", "--no-config").stdout.startswith("file: none (--no-config)")


def test_a_named_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCPCLI_CONFIG", str(tmp_path / "nope.toml"))
    result = tcpcli("connect", "127.0.0.1:9")
    assert result == Result(2, "", f"tcpcli connect: error: {tmp_path / 'nope.toml'}: no such "
                                   "configuration file (named by $TCPCLI_CONFIG)\n")


# -- errors -----------------------------------------------------------------------------------


def test_bad_files_fail_every_reading_command(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, 'timeout = 5\n[targets.db]\naddress = "db:1"\nalow = ["x"]\n')
    monkeypatch.setenv("TCPCLI_CONFIG", str(path))
    expected = (f"{path}:4: [targets.db] unknown key 'alow' for a target; did you mean "
                "'allow'? (--no-config ignores the file)")
    for command in ("connect", "probe", "starttls", "bench"):
        result = tcpcli(command, "127.0.0.1:9")
        assert result == Result(2, "", f"tcpcli {command}: error: {expected}\n")
    assert tcpcli("config", "check").stderr == f"tcpcli config: error: {expected}\n"
    # --no-config is the way out; commands that read no configuration do not care.
    assert tcpcli("connect", "--no-config", "127.0.0.1:9", "--timeout", "0.001").code == 3
    assert tcpcli("completion", "bash").code == 0

    path.write_text('policy = "open"\n[probe\n')
    assert tcpcli("probe", "127.0.0.1").stderr == (
        f"tcpcli probe: error: {path}:2:7: Expected ']' at the end of a table declaration "
        "(TOML syntax; --no-config ignores the file)\n")


def test_unknown_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, '[targets.db]\naddress = "db:1"\n')
    monkeypatch.setenv("TCPCLI_CONFIG", str(path))
    assert tcpcli("connect", "@dbb") == Result(
        2, "", f"tcpcli connect: error: unknown target @dbb in {path}; did you mean @db? "
               "(defined: @db)\n")
    assert tcpcli("probe", "@db", "@x").code == 2
    assert tcpcli("connect", "@db", "5432").stderr == (
        "tcpcli connect: error: @db is db:1, which has its port: drop PORT, or give the "
        "address with the port you want (see 'tcpcli connect --help')\n")
    assert tcpcli("connect", "--no-config", "@db").stderr == (
        "tcpcli connect: error: @db names a target, but --no-config reads no configuration "
        "file\n")


# -- named targets and the file reach real connections ----------------------------------------


def test_named_target_connects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(echo) as server:
        path = write_config(tmp_path, f'[targets.echo]\naddress = "{server.address}"\n'
                                      'allow = ["127.0.0.1"]\n')
        monkeypatch.setenv("TCPCLI_CONFIG", str(path))
        # The target's allow entry is what lets loopback through, and a flag adds to it.
        proc = run_cli("connect", "@echo", "--allow", "192.0.2.1", "--send", "hello")
        assert (proc.returncode, proc.stdout) == (0, b"hello"), proc.stderr
        blocked = run_cli("connect", server.address, "--send", "hello")
        assert (blocked.returncode, blocked.stdout) == (3, b""), blocked.stderr


def test_policy_precedence_reaches_the_command(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'policy = "open"\n')
    with serve(echo) as server:
        by_file = run_cli("connect", server.address, "--send", "a",
                          env={"TCPCLI_CONFIG": str(path)})
        by_env = run_cli("connect", server.address, "--send", "b",
                         env={"TCPCLI_CONFIG": str(path), "TCPCLI_POLICY": "workers"})
        by_flag = run_cli("connect", server.address, "--send", "c", "--policy", "open",
                          env={"TCPCLI_CONFIG": str(path), "TCPCLI_POLICY": "workers"})
    assert (by_file.returncode, by_file.stdout) == (0, b"a"), by_file.stderr
    assert by_env.returncode == 3, by_env.stderr
    assert (by_flag.returncode, by_flag.stdout) == (0, b"c"), by_flag.stderr


def test_relative_ca_file_is_relative_to_the_config_file(
        tmp_path: Path, ca_file: str, server_ssl_context: ssl.SSLContext) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(ca_file, conf / "company-ca.pem")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with serve(echo, ssl_context=server_ssl_context) as server:
        path = write_config(conf, f'ca_file = "company-ca.pem"\n[targets.tls]\n'
                                  f'address = "{server.address}"\ntls = true\n'
                                  'allow = ["127.0.0.1"]\n')
        proc = run_cli("connect", "@tls", "--send", "secret", cwd=elsewhere,
                       env={"TCPCLI_CONFIG": str(path)})
    assert (proc.returncode, proc.stdout) == (0, b"secret"), proc.stderr


# -- completion -------------------------------------------------------------------------------


def test_targets_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, '[targets.db]\naddress = "db:5432"\n'
                                  '[targets.dns]\naddress = "ns:53"\n[targets.web]\n'
                                  'address = "web:443"\n')
    monkeypatch.setenv("TCPCLI_CONFIG", str(path))
    complete = ShellComplete(cli, {}, "tcpcli", "_TCPCLI_COMPLETE")
    items = complete.get_completions(["connect"], "@d")
    assert [(i.value, i.help) for i in items] == [("@db", "db:5432"), ("@dns", "ns:53")]
    assert [i.value for i in complete.get_completions(["probe", "@db"], "@w")] == ["@web"]
    assert complete.get_completions(["connect"], "db") == []


def test_every_dialing_command_expands_targets() -> None:
    from tcpcli.cli.configcheck import CommandTree
    from tcpcli.cli.configoptions import expand_target

    names = CommandTree(cli).configurable_names()
    assert {"bench", "connect", "probe", "starttls"} <= set(names)
    for name in names:  # a new command with the shared options must expand @NAME too
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None
        arguments = [p for p in command.params if p.name in ("target", "targets")]
        assert [p.callback for p in arguments] == [expand_target], name


def test_targets_of_one_probe_must_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, '[targets.a]\naddress = "10.0.0.1"\ntimeout = 1\n'
                                  '[targets.b]\naddress = "10.0.0.2"\ntimeout = 2\n')
    monkeypatch.setenv("TCPCLI_CONFIG", str(path))
    assert tcpcli("probe", "@a", "@b") == Result(
        2, "", "tcpcli probe: error: targets @a and @b disagree on timeout; give --timeout to "
               "choose (see 'tcpcli probe --help')\n")
    assert shown("probe", "@a", "@b", "--timeout", "3")["timeout"]["value"] == 3.0
    monkeypatch.setenv("TCPCLI_TIMEOUT", "4")
    assert shown("probe", "@a", "@b")["timeout"]["value"] == 4.0


def test_config_and_no_config_exclude_each_other(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    assert tcpcli("connect", "--no-config", "--config", str(path), "127.0.0.1:9") == Result(
        2, "", "tcpcli connect: error: --config and --no-config exclude each other "
               "(see 'tcpcli connect --help')\n")


# -- config check --reach: are the tunnels' entry points up? ----------------------------------


def counting_listener() -> tuple[socket.socket, list[int]]:
    """A loopback listener whose accepted connections are counted (in a thread)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                accepted.append(len(conn.recv(1)))  # 0: nothing was sent, then EOF
                conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return listener, accepted


def test_reach_dials_each_entry_point_once_and_never_the_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry, entered = counting_listener()
    target, reached = counting_listener()
    with entry, target, socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: refused
        entry_port, down_port = entry.getsockname()[1], unused.getsockname()[1]
        path = write_config(tmp_path, f"""
[targets.db]
address = "127.0.0.1:{target.getsockname()[1]}"
via = "127.0.0.1:{entry_port}"
[targets.db-tls]
address = "127.0.0.1:{target.getsockname()[1]}"
via = "127.0.0.1:{entry_port}"
starttls = "postgres"
[targets.cache]
address = "cache.internal:6379"
via = "127.0.0.1:{down_port}"
[targets.direct]
address = "127.0.0.1:9"
""")
        monkeypatch.setenv("TCPCLI_CONFIG", str(path))
        text = run_cli("config", "check", "--reach")
        data = run_cli("config", "check", "--reach", "--json")
        time.sleep(0.2)
    lines = text.stdout.decode().splitlines()
    assert text.returncode == 5 and data.returncode == 5, text.stderr
    assert lines[0].endswith("ok (0 settings, 4 targets)")
    assert lines[1].startswith(f"127.0.0.1:{entry_port} (via of @db, @db-tls): up, "
                               "accepted in ")
    assert lines[2] == (f"127.0.0.1:{down_port} (via of @cache): down, connection to "
                        f"127.0.0.1:{down_port} refused; start its forwarder (cloudflared "
                        "access tcp, ssh -L, kubectl port-forward) first")
    event = json.loads(data.stdout)
    points = {point["via"]: point for point in event["entry_points"]}
    assert points[f"127.0.0.1:{entry_port}"]["up"] is True
    assert points[f"127.0.0.1:{down_port}"] | {"error": ""} == {
        "via": f"127.0.0.1:{down_port}", "targets": ["cache"], "up": False, "error": "",
        "kind": "refused"}
    # One connect per run to the shared entry point, no byte sent; the target never.
    assert entered == [0, 0] and reached == []


def test_reach_waits_no_longer_than_its_timeout_for_a_silent_entry_point(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.peers import filtered_port

    with filtered_port() as silent:
        path = write_config(tmp_path, f'[targets.db]\naddress = "db.internal:5432"\n'
                                      f'via = "127.0.0.1:{silent}"\n')
        monkeypatch.setenv("TCPCLI_CONFIG", str(path))
        started = time.monotonic()
        proc = run_cli("config", "check", "--reach")
    assert proc.returncode == 6, proc.stderr
    assert 1.5 < time.monotonic() - started < 10
    assert b"down, no answer within 2 s" in proc.stdout


def test_plain_check_dials_nothing_and_reach_needs_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry, entered = counting_listener()
    with entry:
        path = write_config(tmp_path, f'[targets.db]\naddress = "db.internal:5432"\n'
                                      f'via = "127.0.0.1:{entry.getsockname()[1]}"\n')
        monkeypatch.setenv("TCPCLI_CONFIG", str(path))
        assert tcpcli("config", "check").code == 0
        time.sleep(0.1)
        assert entered == []
    wrong = tcpcli("config", "show", "--reach")
    assert wrong.code == 2 and "--reach goes with check" in wrong.stderr
    empty = write_config(tmp_path / "empty", "timeout = 3\n")
    monkeypatch.setenv("TCPCLI_CONFIG", str(empty))
    none = tcpcli("config", "check", "--reach")
    assert none.code == 0 and "no target has a via entry point" in none.stderr
