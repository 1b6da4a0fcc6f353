"""How many cores a run may spread over (bench's and probe's ``--processes auto``)."""

from __future__ import annotations

import os
import sys
from typing import Final


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: Probes one process is given before another is worth forking (``auto``): below this a
#: scan is over in well under a tenth of a second on loopback.
PROBES_PER_PROCESS: Final = 8192
#: ``auto`` never forks more than this many: past it the loopback device, not the
#: processes, sets the pace.
MAX_AUTO_PROCESSES: Final = 8


def can_fork() -> bool:
    """Whether this system forks a plain process safely (Linux; macOS's system libraries
    are not fork-safe, which is why Python spawns there)."""
    return sys.platform == "linux" and hasattr(os, "fork")


def auto_processes(probes: int, *, capped: bool, live_line: bool = False,
                   cores: int | None = None) -> int:
    """probe's ``--processes auto``: one process per :data:`PROBES_PER_PROCESS` probes, no
    more than the cores; one while the socket cap holds (it is one process's to keep), and
    one while a live line shows a person the scan's progress (only one process could draw
    it, and a scan long enough to need it is worth watching more than a second core).
    Here, not in ``scan_shards``, so that a small scan never imports the forking."""
    if capped or live_line or not can_fork():
        return 1
    cores = cores or available_cores()
    return max(1, min(cores, MAX_AUTO_PROCESSES, probes // PROBES_PER_PROCESS))
