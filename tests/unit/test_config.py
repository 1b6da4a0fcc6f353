"""The configuration file loader: where it looks, what it accepts, how it says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpcli.cli.configcheck import CommandTree
from tcpcli.cli.configfile import key_lines, load, locate
from tcpcli.cli.configmodel import ConfigError, Location
from tcpcli.cli.main import cli

TREE = CommandTree(cli)


def _load(tmp_path: Path, text: str, name: str = "config.toml") -> object:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load(Location(path, "--config", required=True), TREE)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    return caught.value.message.replace(str(tmp_path / "config.toml"), "FILE")


# -- where --------------------------------------------------------------------------------


def test_locate_order() -> None:
    environ = {"TCPCLI_CONFIG": "/env.toml", "XDG_CONFIG_HOME": "/xdg", "HOME": "/home/u"}
    assert locate(None, True, environ) == Location(None, "--no-config", required=False)
    assert locate("/flag.toml", False, environ) == \
        Location(Path("/flag.toml"), "--config", required=True)
    assert locate(None, False, environ) == \
        Location(Path("/env.toml"), "$TCPCLI_CONFIG", required=True)
    del environ["TCPCLI_CONFIG"]
    assert locate(None, False, environ) == \
        Location(Path("/xdg/tcpcli/config.toml"), "$XDG_CONFIG_HOME", required=False)
    environ["XDG_CONFIG_HOME"] = "relative/dir"  # the XDG spec: ignore relative paths
    assert locate(None, False, environ) == \
        Location(Path("/home/u/.config/tcpcli/config.toml"), "~/.config", required=False)


def test_missing_default_file_is_no_configuration(tmp_path: Path) -> None:
    config = load(Location(tmp_path / "absent.toml", "~/.config", required=False), TREE)
    assert not config.exists and not config.shared and not config.targets


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent.toml: no such configuration file "
                                          r"\(named by \$TCPCLI_CONFIG\)"):
        load(Location(tmp_path / "absent.toml", "$TCPCLI_CONFIG", required=True), TREE)


# -- what ---------------------------------------------------------------------------------


def test_layers_and_values(tmp_path: Path) -> None:
    config = _load(tmp_path, 'policy = "open"\ntimeout = 5\nmax_sockets = "unlimited"\n'
                             '[connect]\ntimeout = 2\nidle_timeout = 1.5\n'
                             '[targets.db]\naddress = "db.internal:5432"\ntimeout = 1\n'
                             'starttls = "postgres"\n')
    assert config.default_map("connect") == {  # type: ignore[attr-defined]
        "policy": "open", "timeout": 2, "max_sockets": "unlimited", "idle_timeout": 1.5}
    assert config.default_map("probe")["timeout"] == 5  # type: ignore[attr-defined]
    target = config.target("db")  # type: ignore[attr-defined]
    assert target.address == "db.internal:5432"
    # starttls is connect's --starttls and starttls's --protocol; probe has neither.
    assert {n: s.value for n, s in config.target_layer(target, "connect").items()} == \
        {"timeout": 1, "starttls": "postgres"}  # type: ignore[attr-defined]
    assert {n: s.value for n, s in config.target_layer(target, "starttls").items()} == \
        {"timeout": 1, "protocol": "postgres"}  # type: ignore[attr-defined]
    assert set(config.target_layer(target, "probe")) == {"timeout"}  # type: ignore[attr-defined]


def test_paths_resolve_against_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("x")
    monkeypatch.setenv("HOME", str(tmp_path))
    config = _load(tmp_path, 'ca_file = "certs/ca.pem"\n[targets.a]\naddress = "a:1"\n'
                             'ca_file = "~/certs/ca.pem"\n')
    assert config.shared["ca_file"].value == str(tmp_path / "certs" / "ca.pem")  # type: ignore[attr-defined]
    assert config.target("a").settings["ca_file"].value == \
        str(tmp_path / "certs" / "ca.pem")  # type: ignore[attr-defined]


def test_key_lines() -> None:
    text = ('policy = "open"\n\n[connect]\n  idle_timeout = 3\n'
            '[targets."db.prod"]  # comment\naddress = "x:1"\nsni.x = 1\n')
    assert key_lines(text) == {("policy",): 1, ("connect",): 3, ("connect", "idle_timeout"): 4,
                               ("targets", "db.prod"): 5, ("targets", "db.prod", "address"): 6,
                               ("targets", "db.prod", "sni", "x"): 7}


# -- errors: file, line, key, and a way out -------------------------------------------------

HINT = " (--no-config ignores the file)"


@pytest.mark.parametrize(("text", "message"), [
    ('policy = "open"\ntimeout = \n',
     "FILE:2:11: Invalid value (TOML syntax; --no-config ignores the file)"),
    ('timeout = 5\npolcy = "open"\n', "FILE:2: unknown key 'polcy'; did you mean 'policy'?" + HINT),
    ('[connect]\nidel_timeout = 3\n',
     "FILE:2: [connect] unknown key 'idel_timeout' for tcpcli connect; did you mean "
     "'idle_timeout'?" + HINT),
    ('idle_timeout = 3\n',
     "FILE:1: 'idle_timeout' is not an option every command has; put it under [connect]"
     + HINT),
    ('[conect]\n', "FILE:1: unknown table [conect]; did you mean [connect]?" + HINT),
    ('timeout = "soon"\n', "FILE:1: timeout: 'soon' is not a duration: give seconds (2.5) or "
                          "a number with ms, s, m or h (300ms, 5m)" + HINT),
    ('timeout = "2.5s"\ntimeout_typo = 1\n', "FILE:2: unknown key 'timeout_typo'; did you mean "
                                             "'timeout'?" + HINT),
    ('tls = "yes"\n', 'FILE:1: tls must be true or false, not a string ("yes")' + HINT),
    ('timeout = true\n', 'FILE:1: timeout must be seconds (a number, or a string such as '
                        '"300ms" or "5m"), not a boolean (true)' + HINT),
    ('allow = "10.0.0.1"\n',
     'FILE:1: allow must be a list of strings (allow = ["10.0.0.1"]), not a string' + HINT),
    ('policy = "opne"\n',
     "FILE:1: policy: 'opne' is not one of 'workers', 'workers-strict', 'open', "
     "'bindings'" + HINT),
    ('timeout = -1\n', "FILE:1: timeout: -1 is not above zero: give seconds (2.5) or a number "
                      "with ms, s, m or h (300ms, 5m)" + HINT),
    ('deny = ["10.0.0.0/99"]\n',
     "FILE:1: invalid --deny entry '10.0.0.0/99': '10.0.0.0/99' does not appear to be an "
     "IPv4 or IPv6 network" + HINT),
    ('ca_file = "missing.pem"\n',
     "FILE:1: ca_file: File '{dir}/missing.pem' does not exist" + HINT),
    ('[targets.db]\nport = 5432\n',
     'FILE:1: [targets.db] target db has no address (address = "HOST:PORT")' + HINT),
    ('[targets.db]\naddress = "db:1"\ntsl = true\n',
     "FILE:3: [targets.db] unknown key 'tsl' for a target; did you mean 'tls'?" + HINT),
    ('[targets.db]\naddress = "db:1"\nconcurrency = 9\n',
     "FILE:3: [targets.db] unknown key 'concurrency' for a target ('concurrency' belongs "
     "under [bench]: a target holds its address, the shared options, starttls, via, "
     "send_proxy and proxy_source)" + HINT),
    ('[listen]\necho = true\n',
     "FILE:1: tcpcli listen reads no settings from the configuration file (tables: targets, "
     "bench, connect, ping, probe, starttls)" + HINT),
])
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    assert _error(tmp_path, text) == message.format(dir=tmp_path)


def test_unknown_target_suggests_the_nearest(tmp_path: Path) -> None:
    config = _load(tmp_path, '[targets.db]\naddress = "db:1"\n[targets.cache]\naddress = "c:1"\n')
    with pytest.raises(ConfigError) as caught:
        config.target("dbb")  # type: ignore[attr-defined]
    assert caught.value.message == (f"unknown target @dbb in {tmp_path / 'config.toml'}; "
                                    "did you mean @db? (defined: @db, @cache)")
