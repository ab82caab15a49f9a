"""The default reward model: a cheap proxy for helpfulness, not a trained reward model.

No reward model ships in a registry package, so the default scores what a helpful answer
usually shows: it is on topic, it does not refuse, and (optionally) the base model finds it
fluent. Any object with the `RewardModel` protocol (`name` and `score(prompts, responses)`)
replaces it, for example `shared_core.scorers.SequenceClassifierRewardModel` around a trained
reward model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from shared_core.config import DEFAULT_REFUSAL_TEXT
from shared_core.encoders import PromptEmbeddingCache, SentenceEncoder, load_default_encoder

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

REWARD_PROXY_NAME = "inferenceguard/relevance-fluency-proxy-v1"

REFUSAL_PHRASES: tuple[str, ...] = (
    DEFAULT_REFUSAL_TEXT,
    "I'm sorry, but I can't help with that.",
    "I cannot assist with that request.",
    "As an AI language model, I cannot do that.",
    "I won't provide that information.",
    "Sorry, I am unable to help with this.",
    "I must decline this request because it goes against my guidelines.",
)
"""Reference refusals. A response's refusal similarity is its maximum cosine to any of them."""

REFUSAL_MARKERS: tuple[str, ...] = (
    "i'm sorry",
    "i am sorry",
    "i apologize",
    "as an ai",
    "i cannot",
    "i can't",
    "i can not",
    "i won't",
    "i will not",
    "i'm not able to",
    "i am not able to",
    "i'm unable to",
    "i am unable to",
    "i must decline",
)
"""Openings that mark a refusal, like the refusal-prefix lists of jailbreak evaluations. They
catch topic-specific refusals ("I can't help with baking bread"), whose embeddings sit close to
their topic, so the embedding similarity alone misses them."""

REFUSAL_OPENING_CHARACTERS = 120
"""Only a response's first characters are searched for a refusal marker."""


class RelevanceFluencyRewardProxy:
    """A helpfulness proxy: relevance to the prompt, minus refusal, plus optional fluency.

    `reward = relevance_weight * cos(p, r) - refusal_weight * refusal(r)
    + fluency_weight * mean log p(r | p)`, where `p` and `r` are MiniLM sentence embeddings of
    the prompt and the response. `refusal(r)` is 1 when the response opens with a refusal
    marker (`REFUSAL_MARKERS`) and otherwise its maximum cosine to `refusal_phrases`. The last
    term is the base model's mean token log-likelihood of the response after the
    chat-templated prompt (only when a language model is given). An empty or whitespace-only
    response scores 0.

    It is a proxy: it rewards on-topic, non-refusing, fluent text, and does not check that the
    answer is correct or complete.

    Args:
        encoder: The sentence encoder (shared with the cost model by default).
        relevance_weight: Weight of the prompt-response cosine similarity.
        refusal_weight: Weight of the similarity to the closest refusal phrase.
        fluency_weight: Weight of the mean log-likelihood; 0 disables it.
        language_model: Causal LM for the fluency term; required when `fluency_weight > 0`.
        tokenizer: Its tokenizer, with a chat template.
        refusal_phrases: Reference refusals.
        max_fluency_tokens: Response tokens scored by the fluency term; longer responses are
            truncated.
        prompt_cache_size: Prompt embeddings kept in memory.
    """

    def __init__(
        self,
        encoder: SentenceEncoder,
        *,
        relevance_weight: float = 1.0,
        refusal_weight: float = 1.0,
        fluency_weight: float = 0.0,
        language_model: PreTrainedModel | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        refusal_phrases: Sequence[str] = REFUSAL_PHRASES,
        max_fluency_tokens: int = 256,
        prompt_cache_size: int = 256,
        name: str = REWARD_PROXY_NAME,
    ) -> None:
        if fluency_weight < 0 or relevance_weight < 0 or refusal_weight < 0:
            msg = (
                f"Invalid weights relevance={relevance_weight}, refusal={refusal_weight}, "
                f"fluency={fluency_weight}: each must be >= 0."
            )
            raise ValueError(msg)
        if fluency_weight > 0 and (language_model is None or tokenizer is None):
            msg = (
                f"fluency_weight={fluency_weight} needs a language_model and its tokenizer; "
                f"pass them or set fluency_weight=0."
            )
            raise ValueError(msg)
        if not refusal_phrases:
            msg = "refusal_phrases must contain at least one phrase."
            raise ValueError(msg)
        self.encoder = encoder
        self.relevance_weight = relevance_weight
        self.refusal_weight = refusal_weight
        self.fluency_weight = fluency_weight
        self.language_model = language_model
        self.tokenizer = tokenizer
        self.max_fluency_tokens = max_fluency_tokens
        self.name = name
        self.refusal_embeddings = encoder.encode(list(refusal_phrases))
        self.prompt_cache = PromptEmbeddingCache(encoder, prompt_cache_size)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return one proxy reward per (prompt, response) pair."""
        if len(prompts) != len(responses):
            msg = f"Got {len(prompts)} prompts and {len(responses)} responses; counts must match."
            raise ValueError(msg)
        kept = [i for i, response in enumerate(responses) if response.strip()]
        rewards = [0.0] * len(responses)
        if not kept:
            return rewards
        kept_prompts = [prompts[i] for i in kept]
        kept_responses = [responses[i] for i in kept]

        response_embeddings = self.encoder.encode(kept_responses)
        prompt_embeddings = self.prompt_cache.embed(kept_prompts)
        relevance = (prompt_embeddings * response_embeddings).sum(dim=-1)
        refusal = (response_embeddings @ self.refusal_embeddings.T).max(dim=-1).values
        marked = torch.tensor([opens_with_refusal(response) for response in kept_responses])
        refusal = torch.where(marked, torch.ones_like(refusal), refusal)
        total = self.relevance_weight * relevance - self.refusal_weight * refusal
        if self.fluency_weight > 0:
            fluency = self.mean_log_likelihood(kept_prompts, kept_responses)
            total = total + self.fluency_weight * fluency

        for index, value in zip(kept, total.tolist(), strict=True):
            rewards[index] = float(value)
        return rewards

    def mean_log_likelihood(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Return the language model's mean log-probability of each response's tokens.

        The prompt is rendered as one user turn with the tokenizer's chat template and the
        generation prompt; the response follows as the assistant's text.
        """
        assert self.language_model is not None and self.tokenizer is not None
        sequences = []
        starts = []
        for prompt, response in zip(prompts, responses, strict=True):
            prompt_ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}],
                tokenize=True,
                add_generation_prompt=True,
                return_dict=False,
            )
            response_ids = self.tokenizer.encode(response, add_special_tokens=False)
            response_ids = response_ids[: self.max_fluency_tokens]
            sequences.append(list(prompt_ids) + response_ids)
            starts.append(len(prompt_ids))

        device = next(self.language_model.parameters()).device
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = torch.tensor(sequence)
            attention_mask[row, : len(sequence)] = 1
        with torch.inference_mode():
            logits = self.language_model(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)
            ).logits.float()
        log_probabilities = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = input_ids[:, 1:].to(device)
        token_scores = log_probabilities.gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu()

        means = []
        for row, (sequence, start) in enumerate(zip(sequences, starts, strict=True)):
            # Logit position t predicts token t + 1, so the response tokens start at start - 1.
            scores = token_scores[row, start - 1 : len(sequence) - 1]
            means.append(scores.mean() if scores.numel() else torch.tensor(0.0))
        return torch.stack(means)

    def __repr__(self) -> str:
        return (
            f"RelevanceFluencyRewardProxy(relevance_weight={self.relevance_weight}, "
            f"refusal_weight={self.refusal_weight}, fluency_weight={self.fluency_weight})"
        )


def load_default_reward_model(
    language_model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    fluency_weight: float | None = None,
    device: str = "cpu",
) -> RelevanceFluencyRewardProxy:
    """Build the default reward proxy on the shared MiniLM encoder.

    Args:
        language_model: Base model for the fluency term. Without it the proxy uses relevance
            and refusal only.
        tokenizer: Its tokenizer.
        fluency_weight: Weight of the fluency term; defaults to 0.1 with a language model and
            0 without.
        device: Device of the encoder.
    """
    if fluency_weight is None:
        fluency_weight = 0.1 if language_model is not None else 0.0
    return RelevanceFluencyRewardProxy(
        load_default_encoder(device),
        fluency_weight=fluency_weight,
        language_model=language_model if fluency_weight > 0 else None,
        tokenizer=tokenizer if fluency_weight > 0 else None,
    )


def opens_with_refusal(response: str) -> bool:
    """Return whether the opening of `response` contains a refusal marker (case-insensitive)."""
    opening = response[:REFUSAL_OPENING_CHARACTERS].lower().replace("\u2019", "'")
    return any(marker in opening for marker in REFUSAL_MARKERS)
