"""Logits processors: the unsafe-token penalty and the sampling warpers."""

from __future__ import annotations

import pytest
import torch

from shared_core.logits import (
    TokenPenaltyLogitsProcessor,
    sampling_processors,
    unsafe_token_penalty,
)


def test_penalty_processor_returns_new_tensor():
    processor = TokenPenaltyLogitsProcessor(torch.tensor([0.0, 3.0, 1.0]))
    scores = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    before = scores.clone()
    result = processor(None, scores)
    assert torch.equal(scores, before)
    assert result.data_ptr() != scores.data_ptr()
    assert torch.equal(result, torch.tensor([[1.0, -2.0, 0.0], [0.0, -3.0, -1.0]]))


def test_penalty_processor_pads_to_model_vocabulary():
    processor = TokenPenaltyLogitsProcessor(torch.tensor([1.0, 1.0]))
    result = processor(None, torch.zeros(1, 4))
    assert torch.equal(result, torch.tensor([[-1.0, -1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("penalty", [torch.tensor([-1.0]), torch.tensor([float("inf")])])
def test_penalty_processor_rejects_invalid_penalty(penalty):
    with pytest.raises(ValueError, match="finite and >= 0"):
        TokenPenaltyLogitsProcessor(penalty)


def test_unsafe_penalty_hits_tokens_shared_by_unsafe_candidates():
    penalty = unsafe_token_penalty(
        [[5, 6], [5, 7], [5, 8]], [1.0, 1.0, 1.0], vocab_size=10, strength=4.0
    )
    assert penalty[5] == pytest.approx(4.0)
    for token in (6, 7, 8):
        assert penalty[token] == 0.0  # each appears in only a third of the candidates
    assert int((penalty > 0).sum()) == 1


def test_unsafe_penalty_weights_by_overshoot():
    penalty = unsafe_token_penalty([[1], [2]], [3.0, 1.0], vocab_size=4, strength=2.0)
    assert penalty[1] == pytest.approx(2.0 * 3.001 / 4.002)
    assert penalty[2] == 0.0  # its candidate carries only a quarter of the weight


def test_unsafe_penalty_never_penalises_eos():
    penalty = unsafe_token_penalty(
        [[2, 9], [2, 9]], [1.0, 1.0], vocab_size=10, strength=5.0, protected_ids=[2]
    )
    assert penalty[2] == 0.0
    assert penalty[9] == pytest.approx(5.0)


def test_unsafe_penalty_empty_and_zero_strength():
    assert not unsafe_token_penalty([], [], vocab_size=3, strength=5.0).any()
    assert not unsafe_token_penalty([[1]], [1.0], vocab_size=3, strength=0.0).any()


def test_unsafe_penalty_count_mismatch():
    with pytest.raises(ValueError, match="counts must match"):
        unsafe_token_penalty([[1]], [], vocab_size=3, strength=1.0)


def test_sampling_processors_leave_input_unchanged():
    processors = sampling_processors(
        temperature=0.5, top_p=0.5, suppress_ids=[0], penalty=torch.tensor([0.0, 1.0, 0.0, 0.0])
    )
    scores = torch.tensor([[1.0, 2.0, 3.0, 0.5]])
    before = scores.clone()
    result = processors(torch.empty((1, 0), dtype=torch.long), scores)
    assert torch.equal(scores, before)
    assert result[0, 0] == float("-inf")  # suppressed
    assert result[0, 2] == pytest.approx(6.0)  # kept by top-p, divided by the temperature
    assert result[0, 3] == float("-inf")  # outside the nucleus


def test_sampling_processors_skip_neutral_settings():
    assert len(sampling_processors(temperature=1.0, top_p=1.0)) == 0
