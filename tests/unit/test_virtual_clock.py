"""The virtual-clock event loop of clarad.simulator: time jumps to the next timer, timers keep their
order, and a loop with nothing scheduled stops with an error instead of hanging."""

from __future__ import annotations

import asyncio
import time

import pytest

from clarad.gpus import Slot
from clarad.simulator import ModelledLauncher, VirtualClockLoop


def run(coroutine_function):  # type: ignore[no-untyped-def]
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coroutine_function(loop))
    finally:
        loop.close()


def test_a_day_of_timers_passes_in_no_real_time_and_in_order() -> None:
    async def day(loop: asyncio.AbstractEventLoop) -> tuple[list[str], float]:
        ended: list[str] = []

        async def after(seconds: float, name: str) -> None:
            await asyncio.sleep(seconds)
            ended.append(f"{name}@{loop.time():g}")

        await asyncio.gather(after(86_400, "day"), after(60, "minute"), after(3600, "hour"))
        return ended, loop.time()

    began = time.monotonic()
    assert run(day) == (["minute@60", "hour@3600", "day@86400"], 86_400)
    assert time.monotonic() - began < 5  # a real day would not


def test_a_timeout_fires_at_its_virtual_time() -> None:
    async def wait(loop: asyncio.AbstractEventLoop) -> float:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 30)
        return loop.time()

    assert run(wait) == 30


def test_waiting_with_nothing_scheduled_is_an_error() -> None:
    async def stuck(loop: asyncio.AbstractEventLoop) -> None:
        await asyncio.Event().wait()

    with pytest.raises(RuntimeError, match="the virtual clock would wait forever"):
        run(stuck)


def test_modelled_starts_and_loads_take_their_virtual_time() -> None:
    async def ready(loop: asyncio.AbstractEventLoop) -> tuple[float, list[str]]:
        launcher = ModelledLauncher(start_seconds=2.0, load_seconds={"a": 3.0})
        server = await launcher.start("t0", Slot("cpu-0", ""), 10)
        await server.load("a", "{}")
        await server.load("b", "{}")  # no time given: at once
        return loop.time(), sorted(await server.ready_models())

    assert run(ready) == (5.0, ["a", "b"])
