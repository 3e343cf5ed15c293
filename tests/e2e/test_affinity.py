"""`exchanges.<name>.cpus`: the worker process runs on the configured CPUs, restarts included,
and a CPU the machine does not offer fails the start naming the key."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import pytest

from engine import shm
from engine.config import EngineConfig, ExchangeConfig
from engine.db import DatabaseConfig
from engine.errors import ConfigError
from engine.manager import WebSocketManager
from tests.e2e.harness import SimProc, until


@pytest.fixture
async def sim() -> AsyncIterator[SimProc]:
    proc = await SimProc("binance", rate=0).start()
    yield proc
    await proc.stop()


def config(instance: str, sim: SimProc, cpus: list[int]) -> EngineConfig:
    return EngineConfig(
        instance=instance,
        worker_restart_delay=0.1,
        database=DatabaseConfig(enabled=False),
        exchanges={"binance": ExchangeConfig(ws_url=sim.ws_url, rest_url=sim.rest_url, cpus=cpus)},
    )


async def test_the_worker_runs_on_its_cpus_and_so_does_its_replacement(
    instance: str, sim: SimProc
) -> None:
    usable = sorted(os.sched_getaffinity(0))
    cpu = usable[-1]  # on a machine with one CPU this still checks the mask is applied
    async with WebSocketManager(config(instance, sim, [cpu])) as manager:
        await manager.connect_to_exchange("binance", "c1")  # the exchange's worker starts
        ex = manager.coordinator.exchanges["binance"]
        assert ex.process.pid is not None
        assert os.sched_getaffinity(ex.process.pid) == {cpu}
        assert os.sched_getaffinity(0) == set(usable), "the coordinator itself is not pinned"
        os.kill(ex.process.pid, signal.SIGKILL)
        await until(lambda: ex.restarts == 1 and ex.ready.is_set(), 30, "worker restart")
        assert ex.process.pid is not None
        assert os.sched_getaffinity(ex.process.pid) == {cpu}


@pytest.mark.parametrize("cpus", [[4096], []])
async def test_cpus_the_machine_lacks_fail_the_start_naming_the_key(
    instance: str, sim: SimProc, cpus: list[int]
) -> None:
    manager = WebSocketManager(config(instance, sim, cpus))
    with pytest.raises(ConfigError, match=r"exchanges\.binance\.cpus") as err:
        await manager.start()
    assert err.value.key == "exchanges.binance.cpus"
    assert str(sorted(range(os.cpu_count() or 1))) in err.value.reason, "names what there is"
    assert shm.instance_segments(instance) == [], "nothing was created"
