"""The critic shipped for SmolLM2-135M-Instruct, on the embedded default models."""

from __future__ import annotations

import math

import pytest
import torch

from shared_core.critic import DEFAULT_CRITIC_DIR, load_critic, load_default_critic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base_model():
    from shared_core.defaults import load_base_model

    return load_base_model()


def test_default_critic_matches_base_model(base_model) -> None:
    from shared_core.defaults import BASE_MODEL_NAME, load_default_cost_model
    from shared_core.reward_models import REWARD_PROXY_NAME

    model, _ = base_model
    critic = load_default_critic(model)
    card = critic.card

    assert card.base_model == BASE_MODEL_NAME
    assert card.hidden_size == model.config.hidden_size
    assert card.cost_model == load_default_cost_model().name
    assert card.reward_model == REWARD_PROXY_NAME
    assert math.isclose(card.budget, load_default_cost_model().threshold)
    assert card.metrics["validation"]["auc"] > 0.5
    assert card.training["train"]["prompts"] > 0
    assert "search" in card.evaluation


def test_default_critic_rejects_other_weights(base_model) -> None:
    from shared_core.critic import CriticCompatibilityError

    model, _ = base_model
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    try:
        with torch.no_grad():
            model.model.embed_tokens.weight.mul_(1.5)
        with pytest.raises(CriticCompatibilityError, match="fingerprint"):
            load_critic(DEFAULT_CRITIC_DIR, model)
    finally:
        model.load_state_dict(state)
    assert load_critic(DEFAULT_CRITIC_DIR, model).name == load_default_critic().name


def test_default_guard_runs_with_critic() -> None:
    from shared_core.defaults import load_default_guard

    guard = load_default_guard()
    assert guard.critic is not None
    result = guard.generate(
        "How do I keep basil fresh?", seed=0, max_new_tokens=16, num_samples=2, num_beams=1
    )
    assert result.report.critic == guard.critic.name
    assert result.report.stats.critic_calls > 0
