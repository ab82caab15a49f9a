"""The language model wrapper: prefill, batched block sampling and the KV cache of each row.

Every row of a batch has consumed the same number of response positions, so the KV cache stays
rectangular and needs no attention mask. A row that has finished inside a block keeps being fed
the pad token, and what it computes afterwards is ignored.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList
from transformers.cache_utils import Cache, DynamicCache

from shared_core.kv_cache import select_rows
from shared_core.stopping import StopStrings, eos_token_ids

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT_WINDOW = 2048
"""Context window assumed when neither the model config nor the tokenizer states one."""

_CONTEXT_WINDOW_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_sequence_length",
    "seq_length",
    "n_ctx",
)


@dataclass
class DecodeState:
    """Decoder state of a batch of rows that have all consumed `position` response positions.

    Attributes:
        cache: The KV cache, `rows` in its batch dimension.
        next_logits: Raw logits of each row's next token, shape `(rows, vocab_size)`.
        hidden: Hidden state of the critic's layer at each row's last real token, shape
            `(rows, hidden_size)`, or `None` when no critic needs it.
        position: Response positions consumed so far (real tokens plus pads).
    """

    cache: Cache
    next_logits: torch.Tensor
    hidden: torch.Tensor | None
    position: int

    @property
    def rows(self) -> int:
        """Number of rows."""
        return int(self.next_logits.shape[0])

    def select(self, indices: Sequence[int] | torch.Tensor) -> DecodeState:
        """Return a new state with the given rows, in order; this state stays usable."""
        index = torch.as_tensor(indices, dtype=torch.long)
        with torch.no_grad():
            return DecodeState(
                cache=select_rows(self.cache, index),
                next_logits=self.next_logits.index_select(0, index.to(self.next_logits.device)),
                hidden=None
                if self.hidden is None
                else self.hidden.index_select(0, index.to(self.hidden.device)),
                position=self.position,
            )

    def repeat(self, repeats: int) -> DecodeState:
        """Return a new state with each row repeated `repeats` times in place."""
        return self.select(torch.arange(self.rows).repeat_interleave(repeats))


@dataclass
class BlockSample:
    """Candidates sampled for one block, one per row of the input state.

    Attributes:
        state: The decoder state after the block, one row per candidate.
        new_tokens: Tokens sampled in this block per candidate, without end-of-sequence or pad
            tokens; they include the token that completed a stop string.
        texts: Decoded response text of each candidate (prefix plus new tokens), cut before a
            stop string.
        finish_reasons: `"stop"` (end-of-sequence token or stop string), `"length"`
            (`max_new_tokens` reached) or `None` (still live) per candidate.
        logprobs: Sum of the model's log-probabilities (before any warping) of the new tokens.
        steps: Positions consumed by the block.
    """

    state: DecodeState
    new_tokens: list[list[int]]
    texts: list[str]
    finish_reasons: list[str | None]
    logprobs: list[float]
    steps: int


class LanguageModel:
    """A frozen causal LM and its tokenizer, as the search uses them.

    Args:
        model: A Hugging Face causal LM (any `*ForCausalLM` of transformers 5.x).
        tokenizer: Its tokenizer, with a chat template.
    """

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_token_ids = eos_token_ids(model, tokenizer)
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(getattr(model, "generation_config", None), "pad_token_id", None)
        self.pad_token_id = int(pad) if pad is not None else min(self.eos_token_ids)
        self.suppressed_token_ids = self._special_non_eos_ids()
        self._accepts_logits_to_keep = _accepts_argument(model, "logits_to_keep")

    # --- properties -------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        try:
            return next(self.model.parameters()).device
        except (StopIteration, AttributeError):
            return torch.device("cpu")

    @property
    def context_window(self) -> int:
        """Maximum prompt plus response length in tokens.

        Read from the model config (`max_position_embeddings` or an equivalent key), else from
        `tokenizer.model_max_length`, else `DEFAULT_CONTEXT_WINDOW`.
        """
        config = getattr(self.model, "config", None)
        if config is not None and hasattr(config, "get_text_config"):
            config = config.get_text_config()
        for key in _CONTEXT_WINDOW_KEYS:
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        value = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(value, int) and 0 < value < 10_000_000:
            return value
        # NOTE: a guess for models that state no limit; prompts near it may still fail.
        return DEFAULT_CONTEXT_WINDOW

    def _special_non_eos_ids(self) -> frozenset[int]:
        ids = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        decoder = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        ids.update(index for index, token in decoder.items() if getattr(token, "special", False))
        return frozenset(int(i) for i in ids) - self.eos_token_ids

    # --- text -------------------------------------------------------------------------------

    def decode(self, tokens: Sequence[int]) -> str:
        """Decode response tokens to text, without special tokens or whitespace clean-up."""
        return str(
            self.tokenizer.decode(
                list(tokens), skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        )

    def count_text_tokens(self, text: str) -> int:
        """Return the number of tokens of `text` encoded alone, without special tokens."""
        return len(self.tokenizer.encode(text, add_special_tokens=False)) if text else 0

    # --- forward passes ---------------------------------------------------------------------

    def prefill(self, prompt_ids: Sequence[int], *, hidden_layer: int | None = None) -> DecodeState:
        """Run the prompt through the model once and return the one-row state after it.

        Args:
            prompt_ids: The prompt's token ids.
            hidden_layer: Index into the model's `hidden_states` to keep for the critic, or
                `None`.

        Raises:
            ValueError: If the prompt is empty.
        """
        if not prompt_ids:
            msg = "The prompt encodes to no tokens; pass a non-empty message."
            raise ValueError(msg)
        input_ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        cache = DynamicCache(config=self.model.config)
        logits, hidden = self._forward(input_ids, cache, hidden_layer)
        return DecodeState(cache=cache, next_logits=logits, hidden=hidden, position=0)

    def forward_step(
        self, cache: Cache, tokens: torch.Tensor, *, hidden_layer: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Feed one token per row and return the next logits and the hidden state.

        Args:
            cache: The rows' KV cache; it grows by one position.
            tokens: One token id per row, shape `(rows,)`.
            hidden_layer: Index into `hidden_states` to return, or `None`.

        Returns:
            Logits of shape `(rows, vocab_size)` in float32, and the hidden state of shape
            `(rows, hidden_size)` or `None`.
        """
        return self._forward(tokens.view(-1, 1).to(self.device), cache, hidden_layer)

    def _forward(
        self, input_ids: torch.Tensor, cache: Cache, hidden_layer: int | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "cache": cache,
            "use_cache": True,
            "output_hidden_states": hidden_layer is not None,
        }
        if self._accepts_logits_to_keep:
            kwargs["logits_to_keep"] = 1
        with torch.no_grad():
            outputs = self.model(**kwargs)
            logits = outputs.logits[:, -1, :].float()
            hidden = None
            if hidden_layer is not None:
                hidden = outputs.hidden_states[hidden_layer][:, -1, :].float()
        return logits, hidden

    # --- sampling ---------------------------------------------------------------------------

    def sample_block(
        self,
        state: DecodeState,
        prefixes: Sequence[Sequence[int]],
        *,
        num_steps: int,
        max_new_tokens: int,
        processors: LogitsProcessorList,
        generator: torch.Generator,
        stop_strings: StopStrings,
        hidden_layer: int | None = None,
        check_interrupt: Callable[[], None] | None = None,
    ) -> BlockSample:
        """Sample up to `num_steps` tokens for every row, one batched forward per token.

        Each step is forward(last token) -> (logits, hidden) -> sample, so the forward of a
        block's last token gives the hidden state at the end of the block and the next block's
        first logits.

        Args:
            state: The rows to continue. It is not changed: the block runs on a copy, so the
                caller can resample from the same state.
            prefixes: Response tokens of each row before this block.
            num_steps: Positions to consume at most (fewer when every row finishes early).
            max_new_tokens: A row finishes with `"length"` when its response reaches this many
                positions.
            processors: Logits processors applied before sampling; they must not change their
                input in place.
            generator: The request's random generator.
            stop_strings: Stop strings to match on the decoded text.
            hidden_layer: Index into `hidden_states` for the critic, or `None`.
            check_interrupt: Called before every step; raises to abandon the block.
        """
        rows = state.rows
        if len(prefixes) != rows:
            msg = f"Got {len(prefixes)} prefixes for {rows} rows; counts must match."
            raise ValueError(msg)

        work = state.select(torch.arange(rows))
        cache, logits = work.cache, work.next_logits
        hidden = None if work.hidden is None else work.hidden.clone()
        new_tokens: list[list[int]] = [[] for _ in range(rows)]
        texts: list[str | None] = [None] * rows
        finish: list[str | None] = [None] * rows
        logprobs = [0.0] * rows
        no_input = torch.empty((rows, 0), dtype=torch.long, device=logits.device)
        steps = 0

        for _ in range(num_steps):
            if check_interrupt is not None:
                check_interrupt()
            with torch.no_grad():
                scores = processors(no_input, logits)  # type: ignore[arg-type]
                probs = torch.softmax(scores.float(), dim=-1)
                sampled = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                token_logprobs = torch.log_softmax(logits, dim=-1).gather(1, sampled[:, None])[:, 0]
            steps += 1

            sampled_ids = sampled.tolist()  # one device sync per step, not one per row
            sampled_logprobs = token_logprobs.tolist()
            fed = [self.pad_token_id] * rows
            real = [False] * rows
            for row in range(rows):
                if finish[row] is not None:
                    continue
                token = sampled_ids[row]
                if token in self.eos_token_ids:
                    finish[row] = "stop"
                    continue
                new_tokens[row].append(token)
                logprobs[row] += sampled_logprobs[row]
                fed[row] = token
                real[row] = True
                if stop_strings:
                    text, stopped = stop_strings.truncate(
                        self.decode([*prefixes[row], *new_tokens[row]])
                    )
                    if stopped:
                        texts[row] = text
                        finish[row] = "stop"
                        continue
                if state.position + steps >= max_new_tokens:
                    finish[row] = "length"

            all_done = all(reason is not None for reason in finish)
            if all_done and not (hidden_layer is not None and any(real)):
                break
            feed = torch.tensor(fed, dtype=torch.long)
            logits, step_hidden = self.forward_step(cache, feed, hidden_layer=hidden_layer)
            if hidden is not None and step_hidden is not None:
                mask = torch.tensor(real, device=hidden.device)[:, None]
                hidden = torch.where(mask, step_hidden.to(hidden.device), hidden)
            if all_done:
                break

        final_texts = [
            text if text is not None else self.decode([*prefixes[row], *new_tokens[row]])
            for row, text in enumerate(texts)
        ]
        after = DecodeState(
            cache=cache, next_logits=logits, hidden=hidden, position=state.position + steps
        )
        return BlockSample(
            state=after,
            new_tokens=new_tokens,
            texts=final_texts,
            finish_reasons=finish,
            logprobs=logprobs,
            steps=steps,
        )


def _accepts_argument(model: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return False
    if name in parameters:
        return True
    # Subclasses that wrap forward(**kwargs) pass the argument on to the parent class.
    has_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return has_kwargs and any(
        name in inspect.signature(vars(base)["forward"]).parameters
        for base in type(model).__mro__[1:]
        if "forward" in vars(base)
    )
