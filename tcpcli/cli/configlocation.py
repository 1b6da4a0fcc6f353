"""Where the configuration file is looked for, and where a run keeps what it read: the
facts both the light declarations (:mod:`tcpcli.cli.configoptions`) and the machinery
(:mod:`tcpcli.cli.configfile`, :mod:`tcpcli.cli.configcontext`) need, in a module that
imports neither.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from tcpcli.xdg import base_directory

CONFIG_ENV = "TCPCLI_CONFIG"
#: Where the per-invocation state lives in ``ctx.meta`` (click shares it down the chain).
STATE_KEY = "tcpcli.config"
#: Under $XDG_CONFIG_HOME (or ~/.config).
RELATIVE_PATH = os.path.join("tcpcli", "config.toml")


def default_location(environ: Mapping[str, str]) -> tuple[str, str]:
    """The file read when neither a flag nor ``$TCPCLI_CONFIG`` names one, and what chose
    it: ``$XDG_CONFIG_HOME/tcpcli/config.toml``, else ``~/.config/tcpcli/config.toml``."""
    directory, chosen_by = base_directory(environ, "XDG_CONFIG_HOME", ".config")
    return os.path.join(directory, RELATIVE_PATH), chosen_by
