"""One engine shared by threads and asyncio tasks: isolation, a free event loop, cancellation."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import keyword_cost_model

from shared_core.engine import InferenceGuard

SETTINGS = {"max_new_tokens": 24, "block_size": 8, "num_samples": 4, "num_beams": 2}


@pytest.fixture
def engine(tiny_lm):
    model, tokenizer = tiny_lm
    return InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]))


async def test_concurrent_agenerate_matches_sequential_and_loop_ticks(engine):
    seeds = list(range(16))
    prompts = [f"question {seed}" for seed in seeds]
    sequential = [
        engine.generate(prompt, **SETTINGS, seed=seed, fast_path=seed % 2 == 0)
        for prompt, seed in zip(prompts, seeds, strict=True)
    ]

    ticks = 0
    running = True

    async def ticker() -> None:
        nonlocal ticks
        while running:
            ticks += 1
            await asyncio.sleep(0)

    ticker_task = asyncio.create_task(ticker())
    results = await asyncio.gather(
        *(
            engine.agenerate(prompt, **SETTINGS, seed=seed, fast_path=seed % 2 == 0)
            for prompt, seed in zip(prompts, seeds, strict=True)
        )
    )
    running = False
    await ticker_task

    assert [r.text for r in results] == [r.text for r in sequential]
    assert [r.report.stats.blocks for r in results] == [r.report.stats.blocks for r in sequential]
    assert ticks > 0


async def test_concurrent_astream_matches_generate(engine):
    async def collect(seed: int) -> str:
        return "".join([chunk.text async for chunk in engine.astream("hi", **SETTINGS, seed=seed)])

    texts = await asyncio.gather(*(collect(seed) for seed in range(6)))
    assert texts == [engine.generate("hi", **SETTINGS, seed=seed).text for seed in range(6)]


def test_threads_share_engine(engine):
    expected = {seed: engine.generate("hi", **SETTINGS, seed=seed).text for seed in range(8)}
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            results[seed] = engine.generate("hi", **SETTINGS, seed=seed).text
        except BaseException as error:  # collected so the main thread can fail the test
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == expected


class _GatedCostModel:
    """A keyword cost model whose first call waits until the test opens the gate."""

    name = "gated"
    threshold = 0.5

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.calls = 0

    def score(self, prompts, responses):
        self.calls += 1
        self.entered.set()
        self.gate.wait()
        return [float("bomb" in response) for response in responses]


async def _wait_for(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(0.001)


LONG = {**SETTINGS, "max_new_tokens": 200, "block_size": 2}


async def test_cancelled_agenerate_stops_worker(tiny_lm):
    model, tokenizer = tiny_lm
    cost = _GatedCostModel()
    engine = InferenceGuard(model, tokenizer, cost)
    task = asyncio.create_task(engine.agenerate("hi", **LONG, seed=0))
    await _wait_for(cost.entered)
    task.cancel()
    cost.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    result = await engine.agenerate("hi", **SETTINGS, seed=1)
    assert result.report.certified
    # The cancelled request stopped right after its first cost call instead of running
    # all 100 blocks; the second request made the other calls.
    assert cost.calls == 1 + result.report.stats.cost_calls


async def test_astream_consumer_stop_stops_worker(tiny_lm):
    model, tokenizer = tiny_lm
    cost = _GatedCostModel()
    engine = InferenceGuard(model, tokenizer, cost)
    stream = engine.astream("hi", **LONG, seed=0)
    first = asyncio.ensure_future(stream.__anext__())
    await _wait_for(cost.entered)
    first.cancel()
    cost.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    await stream.aclose()

    result = await engine.agenerate("hi", **SETTINGS, seed=1)
    assert cost.calls == 1 + result.report.stats.cost_calls


async def test_astream_break_frees_engine(engine):
    stream = engine.astream("hi", **LONG, seed=0)
    async for _ in stream:
        break
    await stream.aclose()
    result = await engine.agenerate("hi", **SETTINGS, seed=1)
    assert result.text == engine.generate("hi", **SETTINGS, seed=1).text


async def test_astream_validates_on_call(engine):
    with pytest.raises(TypeError, match="max_tokens"):
        engine.astream("hi", max_tokens=5)
    with pytest.raises(ValueError, match="Invalid role"):
        await engine.agenerate([{"role": "bot", "content": "x"}])
