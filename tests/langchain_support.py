"""Engines over tiny in-process models for the LangChain adapter tests."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Callable
from typing import Any

import torch
from tiny_models import make_forced_model, make_scripted_model, make_tiny_lm

from shared_core.config import GuardConfig
from shared_core.engine import InferenceGuard
from shared_core.scoring import CallableCostModel

SMALL_CONFIG = GuardConfig.preset("fast", max_new_tokens=24, block_size=4, seed=0)
"""A small search: one beam of four candidates, blocks of four tokens, 24 new tokens."""


def allow_all_cost_model() -> CallableCostModel:
    """Return a cost model that scores every response 0 (always within budget)."""
    return CallableCostModel(lambda prompt, response: 0.0, threshold=0.5, name="allow_all")


def banned_word_cost_model(word: str) -> CallableCostModel:
    """Return a cost model that scores 1 (over the 0.5 budget) when `word` is in a response."""
    return CallableCostModel(
        lambda prompt, response: float(word in response.lower()),
        threshold=0.5,
        name=f"bans_{word}",
    )


def forced_guard(
    text: str, cost_model: Any = None, config: GuardConfig = SMALL_CONFIG
) -> InferenceGuard:
    """Return an engine over a tiny model whose output is forced to `text`."""
    model, tokenizer = make_forced_model(text)
    return InferenceGuard(model, tokenizer, cost_model or allow_all_cost_model(), config=config)


def scripted_guard(
    select_text: Callable[[str], str], cost_model: Any = None, config: GuardConfig = SMALL_CONFIG
) -> InferenceGuard:
    """Return an engine over a tiny model whose output is `select_text(decoded prompt)`."""
    model, tokenizer = make_scripted_model(select_text)
    return InferenceGuard(model, tokenizer, cost_model or allow_all_cost_model(), config=config)


def random_guard(
    seed: int = 0, cost_model: Any = None, config: GuardConfig = SMALL_CONFIG
) -> InferenceGuard:
    """Return an engine over a tiny random-weight model."""
    model, tokenizer = make_tiny_lm(seed)
    return InferenceGuard(model, tokenizer, cost_model or allow_all_cost_model(), config=config)


class PromptRecorder:
    """Records the input ids of every prefill (a forward pass over more than one token)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.prompts: list[list[int]] = []
        self._handle = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is not None and input_ids.shape[1] > 1:
            self.prompts.append(input_ids[0].tolist())

    def remove(self) -> None:
        """Detach the hook from the model."""
        self._handle.remove()
