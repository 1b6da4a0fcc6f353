"""Where per-user files live: the XDG base directory rule, in one place for the
configuration file (``$XDG_CONFIG_HOME``) and the trust-store cache (``$XDG_CACHE_HOME``).
Outside :mod:`tcpcli.core` and :mod:`tcpcli.cli`, so that either may use it and a
``--help``, which reads where the configuration file is, loads neither package's code."""

from __future__ import annotations

import os
from collections.abc import Mapping


def base_directory(environ: Mapping[str, str], variable: str, fallback: str
                   ) -> tuple[str, str]:
    """``$variable`` when it is an absolute path (the XDG spec says to ignore a relative
    one), else ``~/fallback``; and how to name the choice (``$XDG_CACHE_HOME``,
    ``~/.cache``). The home directory is ``$HOME``, else the password database's."""
    chosen = environ.get(variable, "")
    if chosen and os.path.isabs(chosen):
        return chosen, f"${variable}"
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, fallback), f"~/{fallback}"
