"""Logits processors of the search: sampling warpers and the unsafe-token penalty."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

MIN_UNSAFE_SHARE = 0.5
"""A token is penalised when the unsafe candidates that contain it carry at least this share of
the total overshoot weight."""


class TokenPenaltyLogitsProcessor(LogitsProcessor):
    """Subtracts a fixed per-token penalty from the logits.

    Args:
        penalty: Non-negative penalty per vocabulary entry, shape `(vocab_size,)`.

    Example:
        >>> processor = TokenPenaltyLogitsProcessor(torch.tensor([0.0, 2.0, 0.0]))
        >>> scores = torch.zeros(1, 3)
        >>> processor(None, scores)
        tensor([[ 0., -2.,  0.]])
        >>> scores  # the input is not changed
        tensor([[0., 0., 0.]])
    """

    def __init__(self, penalty: torch.Tensor) -> None:
        if penalty.dim() != 1:
            msg = f"Invalid penalty of shape {tuple(penalty.shape)}: expected (vocab_size,)."
            raise ValueError(msg)
        if not bool(torch.isfinite(penalty).all()) or bool((penalty < 0).any()):
            msg = "Invalid penalty: every entry must be finite and >= 0."
            raise ValueError(msg)
        self.penalty = penalty

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.Tensor) -> torch.Tensor:
        """Return `scores - penalty`, shape `(batch, vocab_size)`, as a new tensor."""
        vocab_size = scores.shape[-1]
        penalty = self.penalty[:vocab_size].to(device=scores.device, dtype=scores.dtype)
        if penalty.shape[0] < vocab_size:  # the model may pad its vocabulary past the tokenizer's
            penalty = torch.nn.functional.pad(penalty, (0, vocab_size - penalty.shape[0]))
        return scores - penalty


def unsafe_token_penalty(
    token_lists: Sequence[Sequence[int]],
    overshoots: Sequence[float],
    *,
    vocab_size: int,
    strength: float,
    protected_ids: Iterable[int] = (),
    min_share: float = MIN_UNSAFE_SHARE,
) -> torch.Tensor:
    """Build the logit penalty against tokens over-represented in unsafe candidates.

    Each unsafe candidate gets a weight proportional to how far its cost is over the budget
    (`max(C - d, 0)`, plus a small floor so that candidates unsafe only by the critic still
    count). A token's share is the total weight of the candidates whose new tokens contain it;
    tokens with a share of at least `min_share` get `strength * share`.

    Args:
        token_lists: New tokens of each unsafe candidate in the block.
        overshoots: `C - d` of each unsafe candidate, same order.
        vocab_size: Length of the returned vector.
        strength: Penalty of a token found in every unsafe candidate, in logits.
        protected_ids: Tokens never penalised (the end-of-sequence tokens, so that a candidate
            can always stop).
        min_share: Share below which a token is not penalised.

    Returns:
        The penalty per token, shape `(vocab_size,)`, all entries in `[0, strength]`.
    """
    if len(token_lists) != len(overshoots):
        msg = (
            f"Got {len(token_lists)} token lists and {len(overshoots)} overshoots; "
            "counts must match."
        )
        raise ValueError(msg)
    penalty = torch.zeros(vocab_size, dtype=torch.float32)
    if not token_lists or strength == 0:
        return penalty

    weights = [max(o, 0.0) + 1e-3 if math.isfinite(o) else 1.0 for o in overshoots]
    total = sum(weights)
    share = torch.zeros(vocab_size, dtype=torch.float32)
    for tokens, weight in zip(token_lists, weights, strict=True):
        unique = torch.tensor(sorted({t for t in tokens if 0 <= t < vocab_size}), dtype=torch.long)
        if unique.numel():
            share[unique] += weight / total

    penalty = torch.where(share >= min_share - 1e-9, share * strength, penalty)
    protected = torch.tensor([t for t in protected_ids if 0 <= t < vocab_size], dtype=torch.long)
    if protected.numel():
        penalty[protected] = 0.0
    return penalty


def sampling_processors(
    *,
    temperature: float,
    top_p: float,
    suppress_ids: Iterable[int] = (),
    penalty: torch.Tensor | None = None,
) -> LogitsProcessorList:
    """Return the processors applied to raw logits before sampling, in order.

    Suppressed tokens (special tokens other than end-of-sequence) go first, then the
    unsafe-token penalty, the temperature and nucleus (top-p) filtering. Every processor returns
    a new tensor.
    """
    processors = LogitsProcessorList()
    suppress = sorted(set(suppress_ids))
    if suppress:
        processors.append(SuppressTokensLogitsProcessor(suppress))
    if penalty is not None and bool((penalty > 0).any()):
        processors.append(TokenPenaltyLogitsProcessor(penalty))
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    return processors
