"""InferenceGuard generate, stream, agenerate and astream on tiny models."""

from __future__ import annotations

import contextlib

import pytest
import torch
from conftest import keyword_cost_model
from tiny_models import make_forced_model

from shared_core.critic import CriticCard, LatentCritic
from shared_core.engine import InferenceGuard
from shared_core.result import GuardChunk
from shared_core.scoring import CallableCostModel, CallableRewardModel

SMALL = {"max_new_tokens": 24, "block_size": 8, "num_samples": 4, "num_beams": 2}


@pytest.fixture
def engine(tiny_lm):
    model, tokenizer = tiny_lm
    return InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]))


def _stream_text(chunks: list[GuardChunk]) -> str:
    return "".join(chunk.text for chunk in chunks)


async def _astream(engine, messages, **overrides) -> list[GuardChunk]:
    return [chunk async for chunk in engine.astream(messages, **overrides)]


@pytest.mark.parametrize("fast_path", [True, False])
async def test_same_seed_same_text_in_all_four_methods(engine, fast_path):
    settings = {**SMALL, "seed": 7, "fast_path": fast_path}
    result = engine.generate("hello", **settings)
    chunks = list(engine.stream("hello", **settings))
    async_result = await engine.agenerate("hello", **settings)
    async_chunks = await _astream(engine, "hello", **settings)

    assert result.report.certified
    assert _stream_text(chunks) == result.text
    assert async_result.text == result.text
    assert _stream_text(async_chunks) == result.text
    assert engine.generate("hello", **settings).text == result.text


def test_different_seeds_differ(engine):
    texts = {engine.generate("hello", **SMALL, seed=seed).text for seed in range(4)}
    assert len(texts) > 1


def test_last_chunk_carries_usage_and_report(engine):
    chunks = list(engine.stream("hello", **SMALL, seed=1))
    assert all(chunk.finish_reason is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.is_last
    assert last.usage is not None
    assert last.report is not None
    assert last.usage.prompt_tokens == engine.count_tokens("hello")


def test_streamed_prefixes_extend_each_other(engine):
    chunks = list(engine.stream("hello", **SMALL, seed=3, fast_path=False))
    final = _stream_text(chunks)
    assert len([c for c in chunks if c.text]) >= 1
    running = ""
    for chunk in chunks:
        running += chunk.text
        assert final.startswith(running)


def test_report_fields_filled(engine):
    result = engine.generate("hello", **SMALL, seed=2, fast_path=False)
    report = result.report
    assert report.certified
    assert report.cost_model == "keywords"
    assert report.budget == 0.5
    assert report.final_cost == 0.0
    assert report.min_safety_state == 0.5
    assert report.fallback is None
    assert report.fallback_reason is None
    stats = report.stats
    assert stats.blocks >= 1
    assert stats.candidates_sampled >= 4
    assert stats.cost_calls >= 1
    assert stats.fast_path_blocks == 0
    assert set(stats.seconds) >= {"prefill", "sampling", "cost", "total"}
    assert "certified with respect to cost model 'keywords'" in report.claim
    assert report.to_dict()["stats"]["blocks"] == stats.blocks


def test_usage_counts_generated_tokens(engine):
    for seed in range(4):
        result = engine.generate("hello", **{**SMALL, "max_new_tokens": 4}, seed=seed)
        usage = result.usage
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        if result.report.certified:
            assert usage.completion_tokens <= 4


def test_length_finish_reason():
    model, tokenizer = make_forced_model("one two three four five six seven eight nine ten")
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]))
    result = engine.generate("count", max_new_tokens=5, block_size=4, seed=0)
    assert result.finish_reason == "length"
    assert result.text == tokenizer.decode(model.script[:5])
    assert result.report.certified


def test_forced_text_is_returned_exactly():
    model, tokenizer = make_forced_model("The weather is sunny today.")
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]))
    result = engine.generate("weather?", **SMALL, seed=0)
    assert result.text == "The weather is sunny today."
    assert result.finish_reason == "stop"
    assert result.report.certified


@pytest.mark.parametrize("fast_path", [True, False])
def test_stop_string_across_tokens_and_blocks(fast_path):
    model, tokenizer = make_forced_model("Sure, here it is.\nUser: say more please")
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]))
    settings = {**SMALL, "max_new_tokens": 48, "block_size": 4, "fast_path": fast_path}
    stop_ids = tokenizer.encode("\nUser:", add_special_tokens=False)
    assert len(stop_ids) > 1  # the stop string spans several tokens

    result = engine.generate("hi", stop=["\nUser:"], seed=0, **settings)
    chunks = list(engine.stream("hi", stop=["\nUser:"], seed=0, **settings))
    assert result.text == "Sure, here it is."
    assert result.finish_reason == "stop"
    assert _stream_text(chunks) == result.text
    assert all("\n" not in chunk.text for chunk in chunks)


def test_special_tokens_never_sampled():
    model, tokenizer = make_forced_model("<|im_start|>system<|im_start|>")
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]))
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert start in model.script
    for seed in range(3):
        result = engine.generate("hi", **SMALL, seed=seed, temperature=1.0, top_p=1.0)
        assert "<|im_start|>" not in result.text
        ids = tokenizer.encode(result.text, add_special_tokens=False)
        assert start not in ids


def test_per_call_overrides_apply_and_unknown_rejected(engine):
    assert engine.generate("hello", max_new_tokens=3, block_size=2, seed=0).usage is not None
    with pytest.raises(TypeError, match="max_tokens"):
        engine.generate("hello", max_tokens=3)
    with pytest.raises(ValueError, match="temperature"):
        engine.stream("hello", temperature=0)


def test_none_overrides_are_ignored(engine):
    result = engine.generate("hello", **SMALL, seed=5, stop=None, time_limit_s=None)
    assert result.text == engine.generate("hello", **SMALL, seed=5).text


def test_reward_model_ranks_safe_candidates(tiny_lm):
    model, tokenizer = tiny_lm
    reward = CallableRewardModel(lambda prompt, response: float(len(response)), name="length")
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]), reward_model=reward)
    result = engine.generate("hello", **SMALL, seed=0, fast_path=False)
    assert result.report.reward_model == "length"
    assert result.report.stats.reward_calls > 0


def test_critic_scores_every_block(tiny_lm):
    model, tokenizer = tiny_lm
    torch.manual_seed(0)
    critic = LatentCritic(CriticCard(hidden_size=model.config.hidden_size, hidden_dims=(8,)))
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]), critic=critic)
    result = engine.generate("hello", **SMALL, seed=0, fast_path=False, critic_threshold=0.0)
    assert result.report.critic == critic.name
    assert result.report.stats.critic_calls >= 4
    assert result.report.certified


def test_incompatible_critic_rejected_on_first_request(tiny_lm):
    model, tokenizer = tiny_lm
    critic = LatentCritic(CriticCard(hidden_size=model.config.hidden_size + 1, hidden_dims=(8,)))
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]), critic=critic)
    with pytest.raises(ValueError, match="hidden size"):
        engine.generate("hello", **SMALL)


def test_constructor_validates_arguments(tiny_lm):
    model, tokenizer = tiny_lm
    with pytest.raises(TypeError, match="cost_model"):
        InferenceGuard(model, tokenizer, object())
    with pytest.raises(TypeError, match="GuardConfig"):
        InferenceGuard(model, tokenizer, keyword_cost_model(["x"]), config={"seed": 1})
    no_threshold = CallableCostModel(lambda p, r: 0.0, threshold=0.5)
    no_threshold.threshold = float("nan")
    with pytest.raises(ValueError, match="budget"):
        InferenceGuard(model, tokenizer, no_threshold)


def test_budget_from_config_or_threshold(tiny_lm):
    model, tokenizer = tiny_lm
    cost = keyword_cost_model(["bomb"], threshold=0.3)
    assert InferenceGuard(model, tokenizer, cost).budget == 0.3
    from shared_core.config import GuardConfig

    assert InferenceGuard(model, tokenizer, cost, config=GuardConfig(budget=2.0)).budget == 2.0


def test_open_stream_blocks_second_request_in_same_thread(engine):
    chunks = engine.stream("hello", **{**SMALL, "max_new_tokens": 64}, seed=0)
    next(chunks)
    with pytest.raises(RuntimeError, match="open request"):
        engine.generate("hello", **SMALL)
    chunks.close()
    assert engine.generate("hello", **SMALL, seed=0).report is not None


def test_closed_stream_releases_lock(engine):
    with contextlib.closing(engine.stream("hello", **SMALL, seed=0)) as chunks:
        next(chunks)
    assert not engine._lock.locked()
