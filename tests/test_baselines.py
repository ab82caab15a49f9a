"""The benchmark's decoding methods on tiny random and forced models."""

from __future__ import annotations

import pytest
import torch
from conftest import keyword_cost_model
from tiny_models import make_forced_model

from shared_core.baselines import (
    ARGS,
    METHOD_NAMES,
    BaselineSettings,
    BestOfN,
    BlockBeamSearch,
    FilterAfter,
    GuardSearch,
    PlainSampling,
    REControl,
    build_method,
    build_methods,
)
from shared_core.baselines.objectives import augmented_scores, lagrangian_scores
from shared_core.baselines.sampling import sample_responses
from shared_core.config import GuardConfig
from shared_core.critic import CriticCard, LatentCritic
from shared_core.engine import InferenceGuard
from shared_core.result import SearchStats
from shared_core.safety_state import SafetyState
from shared_core.scoring import CallableCostModel, CallableRewardModel

SMALL = GuardConfig(max_new_tokens=24, block_size=8, num_samples=4, num_beams=2)
SEEDS = range(6)


def _length_reward() -> CallableRewardModel:
    return CallableRewardModel(lambda prompt, response: float(len(response)), name="length")


def _letter_cost(letter: str = "e") -> CallableCostModel:
    return CallableCostModel(
        lambda prompt, response: float(letter in response), threshold=0.5, name=f"letter_{letter}"
    )


def _critic(hidden_size: int = 32, seed: int = 0) -> LatentCritic:
    torch.manual_seed(seed)
    return LatentCritic(CriticCard(hidden_size=hidden_size, hidden_dims=(16,)))


@pytest.fixture
def guard(tiny_lm):
    model, tokenizer = tiny_lm
    return InferenceGuard(
        model, tokenizer, _letter_cost(), _length_reward(), critic=_critic(), config=SMALL
    )


# --- every method ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_same_seed_same_text(guard, name):
    method = build_method(name, guard)
    first = method.generate("hello", seed=3)
    second = method.generate("hello", seed=3)

    assert first.text == second.text
    assert first.finish_reason in ("stop", "length", "content_filter")
    if first.fallback:
        assert first.completion_tokens == guard.lm.count_text_tokens(first.text)
    else:
        assert 0 <= first.completion_tokens <= SMALL.max_new_tokens
    assert first.stats.seconds["total"] > 0
    assert method.name == name


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_accepts_chat_messages(guard, name):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
    ]
    output = build_method(name, guard).generate(messages, seed=0)
    assert isinstance(output.text, str)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_counts_generated_tokens(guard, name):
    config = SMALL.replace(max_new_tokens=5, block_size=2)
    outputs = [build_method(name, guard, config=config).generate("hi", seed=s) for s in SEEDS]
    for output in outputs:
        if not output.fallback:
            assert output.completion_tokens <= 5
    lengths = [o.completion_tokens for o in outputs if o.finish_reason == "length"]
    assert lengths
    assert set(lengths) == {5}


def test_build_methods_keeps_order(guard):
    methods = build_methods(["plain", "beam_augmented", "filter_after"], guard)
    assert list(methods) == ["plain", "beam_augmented", "filter_after"]


def test_build_method_unknown_name(guard):
    with pytest.raises(ValueError, match="Unknown method 'greedy'"):
        build_method("greedy", guard)


def test_build_methods_duplicate_names(guard):
    with pytest.raises(ValueError, match="more than once"):
        build_methods(["plain", "plain"], guard)


@pytest.mark.parametrize(
    "name", ["best_of_n_lagrangian", "beam_augmented", "args_reward", "args_lagrangian"]
)
def test_reward_methods_need_reward_model(tiny_lm, name):
    model, tokenizer = tiny_lm
    guard = InferenceGuard(model, tokenizer, _letter_cost(), config=SMALL)
    with pytest.raises(ValueError, match=f"Method '{name}' needs a reward model"):
        build_method(name, guard)


@pytest.mark.parametrize("name", ["re_control", "inferenceguard_critic"])
def test_critic_methods_need_critic(tiny_lm, name):
    model, tokenizer = tiny_lm
    guard = InferenceGuard(model, tokenizer, _letter_cost(), _length_reward(), config=SMALL)
    with pytest.raises(ValueError, match="critic"):
        build_method(name, guard)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lagrange_multiplier", -1.0),
        ("args_weight", float("nan")),
        ("args_top_k", 0),
        ("recontrol_steps", -1),
        ("recontrol_step_size", float("inf")),
    ],
)
def test_baseline_settings_reject_invalid(field, value):
    with pytest.raises(ValueError, match=f"BaselineSettings.{field}"):
        BaselineSettings(**{field: value})


# --- plain sampling and filter-after --------------------------------------------------------------


def test_plain_calls_no_scorer(guard):
    output = PlainSampling(guard).generate("hello", seed=0)
    assert output.stats.cost_calls == 0
    assert output.stats.reward_calls == 0
    assert not output.certified


def test_filter_after_passes_safe_text(tiny_lm):
    model, tokenizer = tiny_lm
    guard = InferenceGuard(model, tokenizer, keyword_cost_model(["no such word"]), config=SMALL)
    plain = PlainSampling(guard).generate("hello", seed=1)
    filtered = FilterAfter(guard).generate("hello", seed=1)

    assert filtered.text == plain.text
    assert filtered.certified
    assert not filtered.fallback
    assert filtered.stats.cost_calls == 1


def test_filter_after_refuses_unsafe_text():
    model, tokenizer = make_forced_model("how to make a bomb")
    guard = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]), config=SMALL)
    output = FilterAfter(guard).generate("hello", seed=0)

    assert output.fallback
    assert output.finish_reason == "content_filter"
    assert output.text == SMALL.refusal_text
    assert not output.certified


def test_filter_after_fails_closed_on_cost_error(tiny_lm):
    def broken(prompt: str, response: str) -> float:
        raise RuntimeError("scorer down")

    model, tokenizer = tiny_lm
    guard = InferenceGuard(
        model, tokenizer, CallableCostModel(broken, threshold=0.5, name="broken"), config=SMALL
    )
    output = FilterAfter(guard).generate("hello", seed=0)
    assert output.fallback
    assert output.text == SMALL.refusal_text


# --- Best-of-N ------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["lagrangian", "augmented"])
def test_best_of_n_returns_top_scored_sample(guard, objective):
    method = BestOfN(guard, objective=objective, lagrange_multiplier=10.0)
    for seed in SEEDS:
        prompt_ids = guard.encode_prompt("hello", config=SMALL)
        generator = torch.Generator().manual_seed(seed)
        from shared_core.baselines.base import Prompt

        sample = sample_responses(
            method, Prompt(prompt_ids, "hello"), generator, SearchStats(), count=4
        )
        rewards = [float(len(t)) for t in sample.texts]
        costs = [float("e" in t) for t in sample.texts]
        if objective == "lagrangian":
            scores = lagrangian_scores(rewards, costs, 10.0)
        else:
            states = [SafetyState.initial(0.5).advance(c) for c in costs]
            scores = augmented_scores(rewards, states, SMALL.penalty)
        expected = sample.texts[max(range(4), key=lambda i: scores[i])]

        assert method.generate("hello", seed=seed).text == expected


def test_best_of_n_augmented_prefers_safe(guard):
    augmented = BestOfN(guard, objective="augmented")
    reward_only = BestOfN(guard, objective="lagrangian", lagrange_multiplier=0.0)
    safe_augmented = sum("e" not in augmented.generate("hello", seed=s).text for s in SEEDS)
    safe_reward_only = sum("e" not in reward_only.generate("hello", seed=s).text for s in SEEDS)
    assert safe_augmented > safe_reward_only


def test_best_of_n_scores_every_sample(guard):
    output = BestOfN(guard, objective="augmented").generate("hello", seed=0)
    assert output.stats.candidates_sampled == SMALL.num_samples
    assert output.stats.cost_calls == SMALL.num_samples
    assert output.stats.reward_calls == SMALL.num_samples


def test_best_of_n_rejects_unknown_objective(guard):
    with pytest.raises(ValueError, match="Invalid objective 'mean'"):
        BestOfN(guard, objective="mean")  # type: ignore[arg-type]


# --- block beam search ----------------------------------------------------------------------------


def test_beam_with_one_candidate_equals_plain(guard):
    single = SMALL.replace(num_samples=1, num_beams=1)
    for seed in SEEDS:
        beam = BlockBeamSearch(guard, objective="augmented", config=single)
        assert (
            beam.generate("hello", seed=seed).text
            == PlainSampling(guard).generate("hello", seed=seed).text
        )


def test_beam_augmented_prefers_safe(guard):
    augmented = BlockBeamSearch(guard, objective="augmented")
    reward_only = BlockBeamSearch(guard, objective="lagrangian", lagrange_multiplier=0.0)
    safe_augmented = sum("e" not in augmented.generate("hello", seed=s).text for s in SEEDS)
    safe_reward_only = sum("e" not in reward_only.generate("hello", seed=s).text for s in SEEDS)
    assert safe_augmented > safe_reward_only


def test_beam_scores_every_candidate_each_block(guard):
    output = BlockBeamSearch(guard, objective="lagrangian").generate("hello", seed=0)
    assert output.stats.blocks >= 1
    assert output.stats.cost_calls == output.stats.candidates_sampled
    assert output.stats.reward_calls == output.stats.candidates_sampled


def test_beam_returns_unsafe_without_fallback():
    model, tokenizer = make_forced_model("a bomb a bomb")
    guard = InferenceGuard(
        model, tokenizer, keyword_cost_model(["bomb"]), _length_reward(), config=SMALL
    )
    output = BlockBeamSearch(guard, objective="augmented").generate("hello", seed=0)
    assert "bomb" in output.text
    assert not output.fallback


# --- ARGS -----------------------------------------------------------------------------------------


def test_args_cost_guidance_avoids_flagged_text(guard):
    guided = ARGS(guard, guidance="cost", weight=100.0)
    unguided = ARGS(guard, guidance="cost", weight=0.0)
    for seed in SEEDS:
        assert "e" not in guided.generate("hello", seed=seed).text
    assert any("e" in unguided.generate("hello", seed=s).text for s in SEEDS)


def test_args_reward_guidance_follows_reward(tiny_lm):
    model, tokenizer = tiny_lm
    count_e = CallableRewardModel(lambda p, r: float(r.count("e")), name="count_e")
    guard = InferenceGuard(model, tokenizer, _letter_cost(), count_e, config=SMALL)
    guided = ARGS(guard, guidance="reward", weight=100.0)
    unguided = ARGS(guard, guidance="reward", weight=0.0)
    guided_count = sum(guided.generate("hello", seed=s).text.count("e") for s in SEEDS)
    unguided_count = sum(unguided.generate("hello", seed=s).text.count("e") for s in SEEDS)
    assert guided_count > unguided_count


def test_args_lagrangian_calls_both_scorers(guard):
    output = ARGS(guard, guidance="lagrangian", top_k=3).generate("hello", seed=0)
    assert output.stats.cost_calls > 0
    assert output.stats.reward_calls > 0
    assert output.stats.cost_calls <= 3 * output.stats.blocks


def test_args_honours_max_new_tokens(guard):
    config = SMALL.replace(max_new_tokens=5)
    output = ARGS(guard, guidance="cost", config=config).generate("hello", seed=0)
    assert output.stats.blocks <= 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"guidance": "judge"}, "Invalid guidance"),
        ({"guidance": "cost", "weight": -1.0}, "Invalid weight"),
        ({"guidance": "cost", "top_k": 0}, "Invalid top_k"),
    ],
)
def test_args_rejects_invalid_settings(guard, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ARGS(guard, **kwargs)


# --- RE-Control -----------------------------------------------------------------------------------


def test_recontrol_without_steps_equals_plain(guard):
    for seed in SEEDS:
        edited = REControl(guard, steps=0).generate("hello", seed=seed).text
        assert edited == PlainSampling(guard).generate("hello", seed=seed).text


def test_recontrol_edit_raises_critic_objective(guard):
    method = REControl(guard, steps=5, step_size=0.1, safety_weight=1.0)
    hidden = torch.randn(3, 32)

    def objective(h: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logit, value = guard.critic(h, torch.full((3,), 0.2))
        return value + torch.nn.functional.logsigmoid(logit)

    edited = method.edit(hidden, 0.2)
    assert edited.shape == hidden.shape
    assert bool((objective(edited) > objective(hidden)).all())


def test_recontrol_edit_leaves_critic_gradients_unset(guard):
    REControl(guard, steps=2).edit(torch.randn(1, 32), 0.1)
    assert all(parameter.grad is None for parameter in guard.critic.parameters())


def test_recontrol_changes_text_with_large_steps(guard):
    method = REControl(guard, steps=10, step_size=1.0)
    changed = [
        method.generate("hello", seed=s).text != PlainSampling(guard).generate("hello", seed=s).text
        for s in SEEDS
    ]
    assert any(changed)


def test_recontrol_rejects_non_last_layer(tiny_lm):
    model, tokenizer = tiny_lm
    critic = LatentCritic(CriticCard(hidden_size=32, hidden_dims=(16,), layer=1))
    guard = InferenceGuard(model, tokenizer, _letter_cost(), critic=critic, config=SMALL)
    with pytest.raises(ValueError, match="must read the last layer"):
        REControl(guard)


def test_recontrol_rejects_model_with_altered_logits():
    # The forced model overwrites its logits after the LM head.
    model, tokenizer = make_forced_model("hello")
    guard = InferenceGuard(
        model, tokenizer, keyword_cost_model(["bomb"]), critic=_critic(), config=SMALL
    )
    with pytest.raises(ValueError, match="does not reproduce the model's logits"):
        REControl(guard).generate("hi", seed=0)


def test_recontrol_refreshes_safety_state_per_block(guard):
    output = REControl(guard, steps=1).generate("hello", seed=0)
    blocks_after_first = (output.stats.blocks - 1) // SMALL.block_size
    assert output.stats.cost_calls == blocks_after_first


# --- InferenceGuard variants ----------------------------------------------------------------------


def test_guard_search_matches_engine(guard):
    method = GuardSearch(guard, use_critic=True, fast_path=False, name="ig")
    engine = InferenceGuard(
        guard.model,
        guard.tokenizer,
        guard.cost_model,
        guard.reward_model,
        critic=guard.critic,
        config=SMALL.replace(fast_path=False),
    )
    output = method.generate("hello", seed=2)
    result = engine.generate("hello", seed=2)

    assert output.text == result.text
    assert output.certified == result.report.certified
    assert output.stats.critic_calls == result.report.stats.critic_calls


def test_guard_search_without_critic_calls_none(guard):
    output = build_method("inferenceguard_no_critic", guard).generate("hello", seed=0)
    assert output.stats.critic_calls == 0


def test_guard_search_fallback_is_refusal():
    model, tokenizer = make_forced_model("bomb bomb bomb bomb")
    guard = InferenceGuard(model, tokenizer, keyword_cost_model(["bomb"]), config=SMALL)
    output = build_method("inferenceguard_no_critic", guard).generate("hello", seed=0)
    assert output.fallback
    assert output.finish_reason == "content_filter"
    assert output.text.endswith(SMALL.refusal_text)
