"""What every benchmarked decoding method shares: its output, prompt encoding and scorer calls.

A method wraps one `InferenceGuard` engine and reuses its language model wrapper
(`shared_core.lm.LanguageModel`), its cost model, reward model, critic, settings and budget, so
that every method decodes with the same model, sampling code and scorers.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from shared_core.chat import Messages, normalize_messages, prompt_text
from shared_core.config import GuardConfig
from shared_core.logits import sampling_processors
from shared_core.result import SearchStats
from shared_core.scoring import check_scores
from shared_core.stopping import StopStrings

if TYPE_CHECKING:
    from transformers import LogitsProcessorList

    from shared_core.engine import InferenceGuard
    from shared_core.lm import LanguageModel


@dataclass
class MethodOutput:
    """The response of one decoding method to one prompt.

    Attributes:
        text: The returned text (the refusal text when the method fell back).
        finish_reason: `"stop"`, `"length"` or `"content_filter"` (the refusal fallback).
        completion_tokens: Tokens the model generated for `text`, or for a refusal, which the
            model did not generate, the tokens of `text` encoded alone (as the engine counts).
        fallback: Whether the method returned its refusal fallback.
        certified: Whether the method itself checked the exact returned text with the cost
            model and found it within the budget. Methods that do not check the returned text
            (plain sampling, Best-of-N, beam search, ARGS, RE-Control) report `False`.
        stats: Counters and seconds per phase, as in the engine's guarantee report.
    """

    text: str
    finish_reason: str
    completion_tokens: int
    fallback: bool = False
    certified: bool = False
    stats: SearchStats = field(default_factory=SearchStats)

    def to_dict(self) -> dict[str, Any]:
        """Return the output without its text, as plain JSON values."""
        return {
            "finish_reason": self.finish_reason,
            "completion_tokens": self.completion_tokens,
            "fallback": self.fallback,
            "certified": self.certified,
            "stats": {
                "blocks": self.stats.blocks,
                "candidates_sampled": self.stats.candidates_sampled,
                "resample_rounds": self.stats.resample_rounds,
                "cost_calls": self.stats.cost_calls,
                "reward_calls": self.stats.reward_calls,
                "critic_calls": self.stats.critic_calls,
                "fast_path_blocks": self.stats.fast_path_blocks,
                "branched": self.stats.branched,
                "seconds": dict(self.stats.seconds),
            },
        }


@dataclass(frozen=True)
class Prompt:
    """An encoded request: the prompt's token ids and the prompt text `x` given to scorers."""

    ids: list[int]
    text: str


class DecodingMethod:
    """Base class of the benchmarked methods: one engine's model, scorers and settings.

    Subclasses implement `_decode`. `generate` encodes the prompt with the engine's chat
    template, seeds a generator and times the whole call.

    Args:
        guard: The engine whose model, tokenizer, cost model, reward model and critic are used.
        config: Settings (sampling, block size, candidates, beams, maximum new tokens). Defaults
            to the engine's.
    """

    name: str = "method"
    """The method's name in benchmark results; subclasses with variants set it per instance."""

    def __init__(self, guard: InferenceGuard, config: GuardConfig | None = None) -> None:
        self.guard = guard
        self.config = config or guard.config
        self.budget = budget_of(self.config, guard)

    @property
    def lm(self) -> LanguageModel:
        """The engine's language model wrapper."""
        return self.guard.lm

    def generate(self, messages: Messages, *, seed: int) -> MethodOutput:
        """Answer `messages` with this method and the request seed `seed`.

        Raises:
            ValueError: If the messages are invalid or the prompt does not fit the context.
        """
        started = time.perf_counter()
        normalized = normalize_messages(messages)
        prompt = Prompt(
            ids=self.guard.encode_prompt(normalized, config=self.config),
            text=prompt_text(normalized),
        )
        generator = torch.Generator(device=self.lm.device).manual_seed(seed)
        stats = SearchStats()
        output = self._decode(prompt, generator, stats)
        output.stats = stats
        stats.add_time("total", time.perf_counter() - started)
        return output

    def _decode(
        self, prompt: Prompt, generator: torch.Generator, stats: SearchStats
    ) -> MethodOutput:
        raise NotImplementedError

    # --- shared pieces ----------------------------------------------------------------------

    def processors(self, penalty: torch.Tensor | None = None) -> LogitsProcessorList:
        """Return the engine's sampling processors for this method's temperature and top-p."""
        return sampling_processors(
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            suppress_ids=self.lm.suppressed_token_ids,
            penalty=penalty,
        )

    @property
    def stop_strings(self) -> StopStrings:
        """The request's stop strings."""
        return StopStrings(self.config.stop)

    def output(
        self, text: str, finish_reason: str | None, tokens: Sequence[int], **changes: Any
    ) -> MethodOutput:
        """Return a `MethodOutput` for `text`, which the model generated as `tokens`."""
        return MethodOutput(
            text=text,
            finish_reason=finish_reason or "length",
            completion_tokens=len(tokens),
            **changes,
        )

    def refusal(self) -> MethodOutput:
        """Return the refusal fallback of the settings, as the engine's `refuse` policy does."""
        text = self.config.refusal_text
        return MethodOutput(
            text=text,
            finish_reason="content_filter",
            completion_tokens=self.lm.count_text_tokens(text),
            fallback=True,
        )

    def costs(self, prompt: Prompt, texts: Sequence[str], stats: SearchStats) -> list[float]:
        """Return the cost model's score of each text.

        Raises:
            ValueError: If the cost model returns the wrong number of scores or a non-finite one.
        """
        cost_model = self.guard.cost_model
        with timed(stats, "cost"):
            raw = cost_model.score([prompt.text] * len(texts), list(texts))
            scores = check_scores(raw, len(texts), cost_model.name)
        stats.cost_calls += len(texts)
        return scores

    def rewards(self, prompt: Prompt, texts: Sequence[str], stats: SearchStats) -> list[float]:
        """Return the reward model's score of each text.

        Raises:
            ValueError: If the engine has no reward model, or it returns invalid scores.
        """
        reward_model = self.guard.reward_model
        if reward_model is None:
            msg = (
                f"Method {self.name!r} needs a reward model, but the engine has none. Pass "
                "reward_model= to InferenceGuard."
            )
            raise ValueError(msg)
        with timed(stats, "reward"):
            raw = reward_model.score([prompt.text] * len(texts), list(texts))
            scores = check_scores(raw, len(texts), reward_model.name)
        stats.reward_calls += len(texts)
        return scores


def budget_of(config: GuardConfig, guard: InferenceGuard) -> float:
    """Return the safety budget `d` of `config`: its `budget`, else the cost model's threshold.

    Raises:
        ValueError: If neither is a finite number.
    """
    if config.budget is not None:
        return float(config.budget)
    threshold = getattr(guard.cost_model, "threshold", None)
    if not isinstance(threshold, int | float) or not math.isfinite(threshold):
        msg = (
            f"No safety budget: cost model {guard.cost_model.name!r} has threshold={threshold!r}. "
            "Set GuardConfig(budget=...) or give the cost model a finite threshold."
        )
        raise ValueError(msg)
    return float(threshold)


@contextlib.contextmanager
def timed(stats: SearchStats, phase: str) -> Iterator[None]:
    """Add the wall-clock seconds of the `with` body to `stats` under `phase`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        stats.add_time(phase, time.perf_counter() - start)
