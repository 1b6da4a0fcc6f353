"""The bench engine's connect fast path, and one bench spread over processes: shares that
add up, counts and errors that add up across children, and a merged distribution."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, strategies as st

from tcpcli.core.invocation import Invocation
from tcpcli.engines.bench import Bench, BenchConfig
from tcpcli.engines.bench_processes import ProcessBench, auto_processes, split
from tests.support.peers import echo, filtered_port, serve


def closed_port() -> int:
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


# --------------------------------------------------------------------------- the plan


@given(count=st.integers(1, 10**6), concurrency=st.integers(1, 512),
       processes=st.integers(1, 64), extra_cap=st.one_of(st.none(), st.integers(0, 512)),
       warmup=st.integers(0, 1000))
def test_shares_add_up_and_keep_each_process_within_its_cap(
        count: int, concurrency: int, processes: int, extra_cap: int | None,
        warmup: int) -> None:
    processes = min(processes, concurrency, count)
    cap = None if extra_cap is None else concurrency + extra_cap
    shares = split(BenchConfig("127.0.0.1:1", count=count, concurrency=concurrency,
                               warmup=warmup, rate=1000.0), cap, processes)
    assert len(shares) == processes
    assert sum(c.count or 0 for c, _ in shares) == count
    assert sum(c.concurrency for c, _ in shares) == concurrency
    assert sum(c.warmup for c, _ in shares) == warmup
    assert sum(c.rate or 0 for c, _ in shares) == pytest.approx(1000.0)
    if cap is None:
        assert all(share_cap is None for _, share_cap in shares)
    else:
        assert sum(share_cap or 0 for _, share_cap in shares) == cap
        assert all(share_cap is not None and share_cap >= c.concurrency
                   for c, share_cap in shares)


def test_a_split_that_cannot_give_every_process_work_is_refused() -> None:
    with pytest.raises(ValueError, match="workers"):
        split(BenchConfig("127.0.0.1:1", concurrency=2), None, 3)
    with pytest.raises(ValueError, match="samples"):
        split(BenchConfig("127.0.0.1:1", count=2, concurrency=8), None, 3)
    with pytest.raises(ValueError, match="socket cap"):
        split(BenchConfig("127.0.0.1:1", concurrency=8), 2, 3)


@pytest.mark.parametrize(("concurrency", "count", "loopback", "cores", "expected"), [
    (6, 100_000, False, 16, 1),  # the default workers: one process, as before
    (64, 100_000, False, 16, 2),
    (512, 1_000_000, False, 16, 16),  # a 16-core user gets 16 cores
    (512, 1_000_000, True, 16, 15),  # a loopback peer keeps a core
    (64, 20_000, True, 2, 1),
    (512, 6_000, False, 16, 1),  # too short to repay a second start-up
])
def test_auto_processes(concurrency: int, count: int, loopback: bool, cores: int,
                        expected: int) -> None:
    config = BenchConfig("127.0.0.1:1", count=count, concurrency=concurrency)
    assert auto_processes(config, loopback=loopback, cores=cores) == expected


# --------------------------------------------------------------------------- the fast path


@pytest.mark.anyio
async def test_fast_path_counts_refusals_and_keeps_the_cap() -> None:
    invocation = Invocation(policy="open", max_sockets=2)
    async with invocation:
        result = await Bench(BenchConfig(f"127.0.0.1:{closed_port()}", count=30,
                                         concurrency=4), invocation).run()
    assert result.samples == 0
    assert result.errors == {"refused": 30}
    assert "refused" in result.error_examples["refused"]
    assert invocation.slots.peak <= 2 and invocation.slots.live == 0


@pytest.mark.anyio
async def test_fast_path_times_out_a_connect_nobody_answers() -> None:
    with filtered_port() as port:
        invocation = Invocation(policy="open")
        async with invocation:
            started = anyio.current_time()
            result = await Bench(BenchConfig(f"127.0.0.1:{port}", count=3, concurrency=3,
                                             timeout=0.3), invocation).run()
            elapsed = anyio.current_time() - started
    assert result.errors == {"timeout": 3}
    assert elapsed < 2
    assert invocation.slots.live == 0


# --------------------------------------------------------------------------- processes


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["connect", "rr"])
async def test_counts_and_distributions_add_up_across_processes(mode: str) -> None:
    observed: list[tuple[str, int]] = []
    with serve(echo) as server:
        invocation = Invocation(policy="open", max_sockets=None)
        async with invocation:
            config = BenchConfig(server.address, mode=mode,  # type: ignore[arg-type]
                                 payload=b"ping" if mode == "rr" else b"", count=61,
                                 concurrency=6, warmup=4)
            bench = ProcessBench(config, invocation, 3,
                                 on_sample=lambda name, ns: observed.append((name, ns)))
            await bench.check_target()
            result = await bench.run()
        with anyio.move_on_after(5):  # the peer's accept loop lags behind
            while len(server.connections) < (65 if mode == "connect" else 6):
                await anyio.sleep(0.05)
        served = len(server.connections)
    primary = result.histograms[mode]
    assert result.samples == primary.count == 61 and result.errors == {}
    assert result.warmup_done == 4
    assert sorted(ns for name, ns in observed if name == mode)[0] == primary.min
    assert len(observed) == 61
    assert 0 < primary.min <= primary.percentile(50) <= primary.percentile(99) <= primary.max
    assert result.elapsed > 0 and result.rate > 0
    assert 3 <= result.peak_sockets <= 6  # each child held one at least, six in all at most
    if mode == "connect":
        assert served == 65
    else:  # one connection a worker, per phase (warm-up, measured)
        assert 6 <= served <= 12


@pytest.mark.anyio
async def test_errors_are_counted_across_processes() -> None:
    invocation = Invocation(policy="open", max_sockets=None)
    async with invocation:
        bench = ProcessBench(BenchConfig(f"127.0.0.1:{closed_port()}", count=40,
                                         concurrency=4), invocation, 2)
        await bench.check_target()
        result = await bench.run()
    assert result.samples == 0
    assert result.errors == {"refused": 40}


@pytest.mark.anyio
async def test_a_canceled_run_keeps_what_the_children_measured() -> None:
    with serve(echo) as server:
        invocation = Invocation(policy="open", max_sockets=None)
        async with invocation:
            bench = ProcessBench(BenchConfig(server.address, duration=30, concurrency=2),
                                 invocation, 2)
            with anyio.move_on_after(1.5):
                await bench.run()
        result = bench.result
        served = len(server.connections)
        await anyio.sleep(0.3)
        assert len(server.connections) == served  # every child stopped dialing
    assert result.samples > 0 and result.samples == result.histograms["connect"].count
    assert 0 < result.elapsed < 30
