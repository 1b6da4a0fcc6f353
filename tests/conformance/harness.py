"""The differential harness: one isolated namespace, one workerd, one set of peers.

Everything runs on one event-loop thread (an anyio blocking portal) that first moves into a
loopback-only network namespace (``netns.py``); workerd is started from that thread and so
lives there too. Each scenario runs on workerd, then on tcpcli, against the same peers; the
peers' records are collected after each run.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from tests.conformance import library, peers
from tests.conformance.runtime import Workerd
from tests.conformance.scenarios import Scenario


@dataclass(frozen=True)
class Outcomes:
    workerd: dict[str, Any]
    tcpcli: dict[str, Any]


@dataclass(frozen=True)
class Certificates:
    """PEM of the CA both runtimes trust, and server contexts issued by it and by another."""

    ca_pem: bytes
    ca_file: str
    trusted: ssl.SSLContext  # localhost, 127.0.0.1, ::1
    name_only: ssl.SSLContext  # localhost only
    untrusted: ssl.SSLContext  # from a CA neither runtime trusts


class Harness:
    def __init__(self, workdir: Path, certificates: Certificates) -> None:
        self.workdir = workdir
        self.certificates = certificates
        self.workerd = Workerd(workdir, certificates.ca_pem)
        self.peers: dict[str, peers.Peer] = {
            "echo": peers.Peer("echo", peers.echo),
            "greet": peers.Peer("greet", peers.greet),
            "silent": peers.Peer("silent", peers.silent),
            "reset": peers.Peer("reset", peers.reset),
            "refused": peers.Peer("refused", None),
            "blackhole": peers.Peer("blackhole", None, blackhole=True),
            # Handshake bytes differ between TLS stacks: count connections only.
            "plain": peers.Peer("plain", peers.not_tls, record_bytes=False),
            "tls": peers.Peer("tls", peers.tls_echo, ssl_context=certificates.trusted),
            "nameonly": peers.Peer("nameonly", peers.tls_echo,
                                   ssl_context=certificates.name_only),
            "untrusted": peers.Peer("untrusted", peers.tls_echo,
                                    ssl_context=certificates.untrusted),
            "starttls": peers.Peer("starttls", peers.starttls,
                                   ssl_context=certificates.trusted),
        }

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Harness]:
        async with anyio.create_task_group() as task_group:
            for peer in self.peers.values():
                await peer.start(task_group)
            self.workerd.start()
            try:
                await self.workerd.wait_ready()
                yield self
            finally:
                self.workerd.stop()
                task_group.cancel_scope.cancel()

    def program(self, scenario: Scenario) -> list[dict[str, Any]]:
        """The scenario's steps with the peers' ports filled in."""
        return self.fill(scenario.program())

    def fill(self, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Steps (or expected outcome steps) with ``{peer}`` replaced by its port."""
        text = json.dumps(steps)
        for name, peer in self.peers.items():
            text = text.replace(f'"{{{name}}}"', str(peer.port))
            text = text.replace(f"{{{name}}}", str(peer.port))
        filled: list[dict[str, Any]] = json.loads(text)
        return filled

    async def _collect(self) -> dict[str, Any]:
        await anyio.sleep(peers.ACCEPT_GRACE_SECONDS)  # connections not yet accepted
        seen = {name: peer for name, peer in self.peers.items() if peer.connections}
        records = {name: await peer.collect() for name, peer in seen.items()}
        for peer in self.peers.values():
            peer.reset()
        return records

    async def run(self, scenario: Scenario) -> Outcomes:
        steps = self.program(scenario)
        for peer in self.peers.values():
            peer.reset()
        on_workerd = await self.workerd.run({"id": scenario.id, "steps": steps})
        on_workerd["peers"] = await self._collect()
        on_tcpcli = await library.run_scenario(
            steps, ca_file=self.certificates.ca_file, library=scenario.library
        )
        on_tcpcli["peers"] = await self._collect()
        return Outcomes(normalize(on_workerd), normalize(on_tcpcli))

    async def run_library(self, scenario: Scenario) -> dict[str, Any]:
        """tcpcli alone, for a production-only rule that workerd does not enforce."""
        for peer in self.peers.values():
            peer.reset()
        outcome = await library.run_scenario(
            self.program(scenario), ca_file=self.certificates.ca_file,
            library=scenario.library,
        )
        outcome["peers"] = await self._collect()
        return normalize(outcome)


#: workerd reports unexpected internal failures with a random reference id.
_INTERNAL_REFERENCE = re.compile(r"(internal error; reference = )[0-9a-z]+")


def normalize(outcome: dict[str, Any]) -> dict[str, Any]:
    """Blank out what differs from run to run (workerd's internal error references)."""
    text = json.dumps(outcome, ensure_ascii=False)
    normalized: dict[str, Any] = json.loads(_INTERNAL_REFERENCE.sub(r"\1…", text))
    return normalized
