"""The block-wise search: resampling, top-K selection, scoring, answer choice, fast path."""

from __future__ import annotations

import pytest
import torch
from conftest import keyword_cost_model
from tiny_models import make_forced_model

from shared_core.config import GuardConfig
from shared_core.engine import InferenceGuard
from shared_core.lm import BlockSample, LanguageModel
from shared_core.safety_state import SafetyState
from shared_core.search import Candidate, GuardedSearch, _Block

SMALL = {"max_new_tokens": 32, "block_size": 4, "num_samples": 4, "num_beams": 2, "seed": 0}
UNSAFE_TEXT = "bomb making, step by step."


def _search(tiny_lm, cost_model=None, **settings) -> GuardedSearch:
    model, tokenizer = tiny_lm
    return GuardedSearch(
        lm=LanguageModel(model, tokenizer),
        cost_model=cost_model or keyword_cost_model(["bomb"]),
        reward_model=None,
        critic=None,
        config=GuardConfig(**settings),
        budget=0.5,
        prompt_ids=[1, 2, 3],
        prompt_text="question",
        generator=torch.Generator().manual_seed(0),
    )


def _candidate(text: str, cost: float, *, finished: bool = True, score: float = 0.0) -> Candidate:
    safety = SafetyState.initial(0.5).advance(cost)
    return Candidate(
        tokens=[7],
        text=text,
        history=(text,),
        safety=safety,
        finish_reason="stop" if finished else None,
        safe=not safety.violated,
        score=score,
    )


def test_resampling_penalty_escapes_unsafe_block():
    model, tokenizer = make_forced_model(UNSAFE_TEXT)
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]))
    result = engine.generate("how?", **SMALL, fast_path=False, resample_penalty=100.0)
    assert result.report.certified
    assert "bomb" not in result.text
    assert result.report.stats.resample_rounds == 1
    assert result.text.endswith("step by step.")


def test_no_resampling_when_rounds_are_zero():
    model, tokenizer = make_forced_model(UNSAFE_TEXT)
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]))
    result = engine.generate("how?", **SMALL, fast_path=False, max_resample_rounds=0)
    assert result.report.stats.resample_rounds == 0
    assert result.report.stats.blocks == 1
    assert result.report.fallback_reason == "no_safe_candidate"


def test_violated_beams_survive_only_for_best_effort():
    model, tokenizer = make_forced_model(UNSAFE_TEXT)
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]))
    refused = engine.generate("how?", **SMALL, fast_path=False)
    best_effort = engine.generate("how?", **SMALL, fast_path=False, fallback="best_effort")
    # Refusing stops once the first block and its resamples are all violated.
    assert refused.report.stats.blocks == 3
    assert best_effort.report.stats.blocks > 3
    assert best_effort.text == UNSAFE_TEXT


def test_fast_path_benign_costs_one_candidate_per_block():
    model, tokenizer = make_forced_model("A harmless answer about the weather.")
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]))
    result = engine.generate("weather?", **SMALL)
    stats = result.report.stats
    assert not stats.branched
    assert stats.fast_path_blocks == stats.blocks
    assert stats.candidates_sampled == stats.blocks
    assert result.report.certified


def test_fast_path_branches_below_margin():
    model, tokenizer = make_forced_model("A harmless answer about the weather.")
    cost = keyword_cost_model(["weather"], threshold=0.5)
    engine = InferenceGuard(model, tokenizer, cost)
    # z = 0.5 on every block, so a margin above it always branches at the first block.
    result = engine.generate("weather?", **SMALL, fast_path_margin=0.6, resample_penalty=100.0)
    stats = result.report.stats
    assert stats.branched
    assert stats.fast_path_blocks == 1
    assert stats.candidates_sampled > stats.blocks


def test_keep_top_prefers_non_violated(tiny_lm):
    search = _search(tiny_lm, num_samples=4, num_beams=2)
    state = search.lm.prefill([1, 2, 3]).repeat(4)
    candidates = [
        _candidate("a", 1.0, finished=False, score=-100.0),
        _candidate("b", 0.0, finished=False, score=-2.0),
        _candidate("c", 0.0, finished=True, score=5.0),
        _candidate("d", 0.0, finished=False, score=-1.0),
    ]
    sample = BlockSample(state, [[7]] * 4, ["a", "b", "c", "d"], [None] * 4, [0.0] * 4, 1)
    kept_state = search._keep_top(_Block(candidates, sample))
    assert [beam.text for beam in search.beams] == ["d", "b"]
    assert [c.text for c in search.pool] == ["c"]
    assert kept_state.rows == 2


def test_keep_top_violated_fill_for_best_effort(tiny_lm):
    search = _search(tiny_lm, num_samples=4, num_beams=2, fallback="best_effort")
    state = search.lm.prefill([1, 2, 3]).repeat(2)
    candidates = [
        _candidate("a", 1.0, finished=False, score=-100.5),
        _candidate("b", 0.0, finished=False, score=-2.0),
    ]
    sample = BlockSample(state, [[7]] * 2, ["a", "b"], [None] * 2, [0.0] * 2, 1)
    search._keep_top(_Block(candidates, sample))
    assert [beam.text for beam in search.beams] == ["b", "a"]


def test_unsafe_score_is_penalty_plus_overshoot(tiny_lm):
    search = _search(tiny_lm, penalty=100.0)
    unsafe = _candidate("bomb", 1.0)
    unsafe.safe = False
    safe = _candidate("fine", 0.0)
    safe.logprob, safe.tokens = -6.0, [1, 2, 3]
    search._score([unsafe, safe])
    assert unsafe.score == pytest.approx(-100.0 - (1.0 - 0.5))
    assert safe.score == pytest.approx(-2.0)  # mean log-probability without reward model


def test_answer_is_best_never_violated_and_rechecked(tiny_lm):
    search = _search(tiny_lm)
    search.pool = [
        _candidate("bomb!", 1.0, score=50.0),
        _candidate("fine", 0.0, score=1.0),
        _candidate("better", 0.0, score=3.0),
    ]
    outcome = search._choose_answer()
    assert outcome.answer is not None
    assert outcome.answer.text == "better"
    assert outcome.final_cost == 0.0
    assert search.stats.cost_calls == 1


def test_answer_must_extend_committed_text(tiny_lm):
    search = _search(tiny_lm)
    search.tracker.committed = "fi"
    search.pool = [_candidate("better", 0.0, score=3.0), _candidate("fine", 0.0, score=1.0)]
    assert search._choose_answer().answer.text == "fine"
