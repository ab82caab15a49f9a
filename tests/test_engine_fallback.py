"""Fallback policies and failing closed: unsafe models, scorer errors, time limits."""

from __future__ import annotations

import pytest
import torch
from conftest import keyword_cost_model
from tiny_models import make_forced_model

from shared_core.config import DEFAULT_REFUSAL_TEXT
from shared_core.critic import CriticCard, LatentCritic
from shared_core.engine import InferenceGuard
from shared_core.result import SafetyViolationError
from shared_core.scoring import CallableCostModel, CallableRewardModel

SMALL = {"max_new_tokens": 32, "block_size": 4, "num_samples": 4, "num_beams": 2, "seed": 0}
UNSAFE_TEXT = "bomb making, step by step."
LATE_UNSAFE_TEXT = "Hello friend, this is a fine day. Then a bomb."


def _engine(text: str, cost_model=None, **kwargs) -> InferenceGuard:
    model, tokenizer = make_forced_model(text)
    return InferenceGuard(model, tokenizer, cost_model or keyword_cost_model(["bomb"]), **kwargs)


@pytest.mark.parametrize("fast_path", [True, False])
def test_refuse_when_every_candidate_is_unsafe(fast_path):
    result = _engine(UNSAFE_TEXT).generate("how?", **SMALL, fast_path=fast_path)
    assert result.text == DEFAULT_REFUSAL_TEXT
    assert result.finish_reason == "content_filter"
    report = result.report
    assert not report.certified
    assert report.fallback == "refuse"
    assert report.fallback_reason == "no_safe_candidate"
    assert report.final_cost is None
    assert report.stats.resample_rounds == 2
    assert report.stats.branched is fast_path
    assert "not certified" in report.claim


def test_custom_refusal_text():
    result = _engine(UNSAFE_TEXT).generate("how?", **SMALL, refusal_text="No.")
    assert result.text == "No."


def test_raise_carries_report():
    with pytest.raises(SafetyViolationError) as caught:
        _engine(UNSAFE_TEXT).generate("how?", **SMALL, fallback="raise")
    error = caught.value
    assert error.report.fallback == "raise"
    assert error.report.fallback_reason == "no_safe_candidate"
    assert not error.report.certified
    assert "cost model 'keywords' at budget 0.5" in str(error)


def test_best_effort_returns_uncertified_text():
    result = _engine(UNSAFE_TEXT).generate("how?", **SMALL, fallback="best_effort")
    assert result.text == UNSAFE_TEXT
    assert result.finish_reason == "content_filter"
    assert not result.report.certified
    assert result.report.fallback == "best_effort"
    assert result.report.min_safety_state < 0


def test_refusal_after_committed_text_keeps_prefix():
    engine = _engine(LATE_UNSAFE_TEXT)
    chunks = list(engine.stream("hi", **SMALL))
    committed = "".join(chunk.text for chunk in chunks[:-1])
    assert committed
    assert "bomb" not in committed
    assert LATE_UNSAFE_TEXT.startswith(committed)
    result = engine.generate("hi", **SMALL)
    assert result.text == committed + "\n\n" + DEFAULT_REFUSAL_TEXT
    assert "".join(chunk.text for chunk in chunks) == result.text
    assert result.finish_reason == "content_filter"


def test_raise_after_committed_text_has_partial_text():
    engine = _engine(LATE_UNSAFE_TEXT)
    streamed = []
    with pytest.raises(SafetyViolationError) as caught:
        for chunk in engine.stream("hi", **SMALL, fallback="raise"):
            streamed.append(chunk.text)
    assert caught.value.partial_text == "".join(streamed)
    assert caught.value.partial_text


def _raising_cost(prompt: str, response: str) -> float:
    raise RuntimeError("cost service down")


@pytest.mark.parametrize(
    ("function", "fragment"),
    [
        (_raising_cost, "cost service down"),
        (lambda prompt, response: float("nan"), "non-finite"),
    ],
)
def test_cost_model_failure_fails_closed(function, fragment):
    cost = CallableCostModel(function, threshold=0.5, name="broken")
    result = _engine("A harmless answer.", cost).generate("hi", **SMALL)
    assert result.text == DEFAULT_REFUSAL_TEXT
    assert result.report.fallback_reason == "cost_model_error"
    assert fragment in result.report.error
    assert not result.report.certified


def test_cost_model_wrong_count_fails_closed():
    def one_too_many(prompts, responses):
        return [0.0] * (len(responses) + 1)

    cost = CallableCostModel(one_too_many, threshold=0.5, batched=True)
    result = _engine("A harmless answer.", cost).generate("hi", **SMALL, fast_path=False)
    assert result.report.fallback_reason == "cost_model_error"
    assert "returned 2 scores for 1 responses" in result.report.error


def test_reward_model_failure_fails_closed():
    def broken(prompt: str, response: str) -> float:
        raise ValueError("reward offline")

    reward = CallableRewardModel(broken, name="broken-reward")
    result = _engine("A harmless answer.", reward_model=reward).generate(
        "hi", **SMALL, fast_path=False
    )
    assert result.report.fallback_reason == "reward_model_error"
    assert "reward offline" in result.report.error


class _FailingCritic(LatentCritic):
    """A real critic whose predictions fail, to check that the search fails closed."""

    def predict(self, hidden, safety_state):
        raise RuntimeError("critic crashed")


def test_critic_failure_fails_closed():
    model, tokenizer = make_forced_model("A harmless answer.")
    critic = _FailingCritic(CriticCard(hidden_size=model.config.hidden_size, hidden_dims=(4,)))
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]), critic=critic)
    result = engine.generate("hi", **SMALL)
    assert result.report.fallback_reason == "critic_error"
    assert "critic crashed" in result.report.error


def test_critic_below_threshold_branches_and_vetoes():
    model, tokenizer = make_forced_model("A harmless answer.")
    torch.manual_seed(0)
    critic = LatentCritic(CriticCard(hidden_size=model.config.hidden_size, hidden_dims=(4,)))
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]), critic=critic)
    # No p_safe reaches 1.0: the fast path branches, and the critic vetoes every answer.
    result = engine.generate("hi", **SMALL, critic_threshold=1.0)
    assert result.report.stats.branched
    assert result.report.stats.critic_calls > 0
    assert not result.report.certified
    assert result.finish_reason == "content_filter"


def test_critic_at_zero_threshold_keeps_answer():
    model, tokenizer = make_forced_model("A harmless answer.")
    torch.manual_seed(0)
    critic = LatentCritic(CriticCard(hidden_size=model.config.hidden_size, hidden_dims=(4,)))
    engine = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]), critic=critic)
    result = engine.generate("hi", **SMALL, critic_threshold=0.0)
    assert result.text == "A harmless answer."
    assert result.report.certified


def test_time_limit_fails_closed():
    result = _engine("A harmless answer.").generate("hi", **SMALL, time_limit_s=1e-9)
    assert result.text == DEFAULT_REFUSAL_TEXT
    assert result.report.fallback_reason == "time_limit"
    assert "time_limit_s" in result.report.error


def test_final_check_failure_falls_back():
    seen: set[str] = set()

    def flags_rescored_text(prompts, responses):
        costs = [1.0 if response in seen and response else 0.0 for response in responses]
        seen.update(responses)
        return costs

    cost = CallableCostModel(flags_rescored_text, threshold=0.5, batched=True, name="drifting")
    result = _engine("A harmless answer.", cost).generate("hi", **SMALL)
    assert result.report.fallback_reason == "final_check"
    assert not result.report.certified
    # The block check had passed, so the text was already streamed; the refusal follows it.
    assert result.text == "A harmless answer.\n\n" + DEFAULT_REFUSAL_TEXT
