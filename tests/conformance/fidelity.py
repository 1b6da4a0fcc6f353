"""Render the README's fidelity section from the scenario data and the differences table.

    python -m tests.conformance.fidelity          # rewrite the section in README.md

A test fails when the README's section differs from what this renders.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from tests.conformance.runtime import pinned_version
from tests.conformance.scenarios import DIFFERENCES, SCENARIOS

START = "<!-- fidelity:start -->"
END = "<!-- fidelity:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def render() -> str:
    total = len(SCENARIOS)
    differing = [item for item in SCENARIOS if item.difference is not None]
    production = [item for item in SCENARIOS if item.production is not None]
    matching = total - len(differing) - len(production)
    topics = Counter(item.topic for item in SCENARIOS)
    coverage = ", ".join(f"{topic} {count}" for topic, count in topics.items())
    lines = [
        "## Fidelity to Workers",
        "",
        f"The library's socket semantics are checked against **workerd {pinned_version()}**,",
        "Cloudflare's open-source Workers runtime. `tests/conformance/` writes each scenario",
        "once as data — an address, options and steps — and runs it twice: by a Worker that",
        "calls `connect()` from `cloudflare:sockets` inside workerd, and by this library, both",
        "against the same peers in a network namespace that holds only loopback. It compares",
        "what each side observes: whether `connect()` throws, the error class and exact",
        "message, how `opened` and `closed` settle and when, `remoteAddress`, what reads",
        "return, what the peer receives, writes after close or after the peer's EOF,",
        "`startTls()` misuse and the `upgraded`/`secureTransport` attributes.",
        "",
        f"**{total} scenarios ({coverage}): {matching} match workerd exactly.**",
        f"{len(differing)} show the deliberate differences below; the suite fails",
        "if one of them starts matching, or if this section is stale.",
        f"{len(production)} check production rules that local workerd does not enforce, on",
        "the library alone: sockets opened all at once beyond the six-socket cap are",
        "served by canceling the least recently used idle one (the limits page's deadlock",
        "rule), and using a canceled socket throws ("
        + ", ".join(f"`{item.id}`" for item in production) + ").",
        "",
        "| Difference | Why | Scenarios |",
        "|---|---|---|",
    ]
    for key, difference in DIFFERENCES.items():
        ids = ", ".join(f"`{item.id}`" for item in differing if item.difference == key)
        lines.append(f"| {difference.title} | {difference.reason} | {ids} |")
    lines += [
        "",
        "Run it with `python -m pytest tests/conformance` after",
        "`bash tests/conformance/install-workerd.sh` (npm; needs root for the namespace).",
    ]
    return "\n".join(lines)


def current_section(readme: str) -> str | None:
    if START not in readme or END not in readme:
        return None
    return readme.split(START, 1)[1].split(END, 1)[0].strip("\n")


def write(path: Path = README) -> None:
    text = path.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{render()}\n{END}{tail}")


if __name__ == "__main__":
    write()
    sys.stdout.write(f"wrote the fidelity section of {README}\n")
