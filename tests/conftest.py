"""Shared fixtures: a tiny random chat model and a keyword cost model.

Torch runs single-threaded here: with several test processes on a small machine, its
intra-op thread pool spins against the other processes and tiny forwards get about 100 times
slower.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from tiny_models import make_tiny_lm

from shared_core.scoring import CallableCostModel

torch.set_num_threads(1)


def keyword_cost_model(
    words: tuple[str, ...] | list[str], *, threshold: float = 0.5, name: str = "keywords"
) -> CallableCostModel:
    """Return a cost model that scores 1.0 when a response contains any of `words`, else 0.0."""
    banned = tuple(words)

    def cost(prompt: str, response: str) -> float:
        return float(any(word in response for word in banned))

    return CallableCostModel(cost, threshold=threshold, name=name)


@pytest.fixture(scope="session")
def tiny_lm():
    """A tiny random Llama chat model and its tokenizer, shared by the session (read-only)."""
    return make_tiny_lm()


@pytest.fixture
def keyword_cost():
    """Factory for keyword cost models: `keyword_cost(["bomb"], threshold=0.5)`."""
    return keyword_cost_model
