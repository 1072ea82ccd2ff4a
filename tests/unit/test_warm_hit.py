"""A warm hit: the idle instance that answered its health probe at the end of its previous job, and
whose process is still running, is handed to the next job without asking Triton anything; one not
vouched for so recently is probed first."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

from clarad.placement import Action
from clarad.simulator import ModelledTriton
from tests.unit.driving import Harness, drive, pipeline_text
from tests.unit.test_runner import begin


def counted(server: ModelledTriton, calls: Counter[str], vouched: bool) -> None:
    """Count the calls that ask the modelled Triton something; say it answered a probe just now or not."""
    for name in ("healthy", "ready_models", "load", "served_revision"):
        original: Callable[..., Any] = getattr(server, name)

        def call(*args: Any, _name: str = name, _original: Callable[..., Any] = original) -> Any:
            calls[_name] += 1
            return _original(*args)

        setattr(server, name, call)
    server.answered_within = lambda seconds: vouched  # type: ignore[method-assign]


async def warmed(h: Harness) -> ModelledTriton:
    """The one instance, idle after a first job of model a."""
    h.add_model("a")
    await h.ended(begin(h, h.create_job(pipeline_text(["a"]))))
    (server,) = h.launcher.started
    return server


@drive
async def test_a_vouched_for_instance_is_handed_over_without_a_call_to_triton(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        server = await warmed(h)
        calls: Counter[str] = Counter()
        counted(server, calls, vouched=True)
        warm = begin(h, h.create_job(pipeline_text(["a"])))
        assert (warm.decision.action, warm.decision.load) == (Action.REUSE, ())
        assert (await h.ended(warm))["status"] == "HEALTHY"
        assert calls == Counter({"healthy": 1})  # the probe at the job's end only: none before it


@drive
async def test_an_instance_not_vouched_for_is_probed_before_the_job(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        server = await warmed(h)
        calls: Counter[str] = Counter()
        counted(server, calls, vouched=False)
        warm = begin(h, h.create_job(pipeline_text(["a"])))
        assert (await h.ended(warm))["status"] == "HEALTHY"
        assert calls == Counter({"healthy": 2, "ready_models": 1})  # before the job, and at its end


@drive
async def test_a_vouched_for_instance_frozen_since_is_not_handed_over(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        server = await warmed(h)
        calls: Counter[str] = Counter()
        counted(server, calls, vouched=True)
        server.frozen = True  # modelled SIGSTOP: the process table says "stopped"
        warm = begin(h, h.create_job(pipeline_text(["a"])))
        record = await h.ended(warm)
        assert calls == Counter({"healthy": 2})  # probed (and refused) before the job, then at its end
        assert (record["status"], record["reason"]) == ("FAULTED", "instance triton-0 did not answer a health probe; "
                                                                   "it is stopped")  # begun outside the scheduler: not queued again
