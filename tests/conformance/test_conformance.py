"""tcpcli's socket semantics against workerd, the open-source Workers runtime (issue 9).

Each scenario in ``scenarios.py`` runs on a Worker inside workerd and on tcpcli; the outcome
records must be equal, or the scenario names a documented difference and they must differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conformance import fidelity
from tests.conformance.conftest import Oracle
from tests.conformance.scenarios import DIFFERENCES, SCENARIOS, Scenario, by_id

README = Path(__file__).resolve().parents[2] / "README.md"


def _explain(workerd: object, tcpcli: object) -> str:
    return (
        "\nworkerd: " + json.dumps(workerd, ensure_ascii=False, indent=1)
        + "\ntcpcli:  " + json.dumps(tcpcli, ensure_ascii=False, indent=1)
    )


def _first_difference(workerd: dict[str, object], tcpcli: dict[str, object]) -> str:
    left = workerd.get("steps", [])
    right = tcpcli.get("steps", [])
    assert isinstance(left, list)
    assert isinstance(right, list)
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return f"step {index} ({a.get('op')}): workerd {a} vs tcpcli {b}"
    if len(left) != len(right):
        return f"workerd ran {len(left)} steps, tcpcli {len(right)}"
    return f"peers: workerd {workerd.get('peers')} vs tcpcli {tcpcli.get('peers')}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda item: item.id)
def test_scenario(oracle: Oracle, scenario: Scenario) -> None:
    if scenario.production is not None:  # workerd does not enforce it: tcpcli alone
        steps = oracle.run_library(scenario)["steps"]
        expected = oracle.harness.fill(list(scenario.production))
        assert steps == expected, f"{scenario.id}: " + _explain(expected, steps)
        return
    outcomes = oracle.run(scenario)
    same = outcomes.workerd == outcomes.tcpcli
    if scenario.difference is None:
        assert same, (
            f"{scenario.id} differs from workerd: "
            f"{_first_difference(outcomes.workerd, outcomes.tcpcli)}"
            + _explain(outcomes.workerd, outcomes.tcpcli)
        )
    else:
        assert not same, (
            f"{scenario.id} now matches workerd: drop it from the '{scenario.difference}' "
            "row of the differences table" + _explain(outcomes.workerd, outcomes.tcpcli)
        )


def test_scenario_data_is_sound() -> None:
    scenarios = by_id()
    assert all(item.difference in (None, *DIFFERENCES) for item in scenarios.values())
    used = {item.difference for item in scenarios.values()}
    for item in scenarios.values():
        if item.production is not None:  # production-only: no workerd record to differ from
            assert item.difference is None and item.library.get("max_sockets") is not None
    assert set(DIFFERENCES) <= used, "every documented difference is shown by a scenario"
    address_strings = [item for item in SCENARIOS if item.topic == "address string"]
    assert len(address_strings) >= 40


def test_readme_fidelity_section_is_fresh() -> None:
    assert fidelity.current_section(README.read_text()) == fidelity.render(), (
        "README's fidelity section is stale: run `python -m tests.conformance.fidelity`"
    )
