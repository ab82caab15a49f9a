"""The InferenceGuard block-wise search and its single-beam fast path.

The search decodes the response in blocks of `w` tokens. After every block the cost model
scores each candidate's text, which gives its safety state `z = d - C(x, y_k)`. The critic, when
one is loaded, estimates from the hidden state whether the candidate will stay safe. When every
candidate of a block is unsafe, the block is resampled from the same beams with a logit penalty
on the tokens that made the candidates unsafe. The top `K` candidates are kept as beams, and
finished ones go to a pool from which the answer is taken.

`GuardedSearch.run` is a generator: it yields each newly committed piece of text (see
`streaming.CommitTracker`) and returns a `SearchOutcome`. `InferenceGuard.stream` turns both
into chunks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from shared_core.config import GuardConfig
from shared_core.critic_base import Critic
from shared_core.lm import BlockSample, DecodeState, LanguageModel
from shared_core.logits import sampling_processors, unsafe_token_penalty
from shared_core.result import SearchStats
from shared_core.safety_state import SafetyState
from shared_core.scoring import CostModel, RewardModel, check_scores
from shared_core.stopping import StopStrings
from shared_core.streaming import CommitTracker

logger = logging.getLogger(__name__)


class SearchCancelled(Exception):
    """Raised inside the search when the caller stopped consuming the request."""


class TimeLimitExceeded(Exception):
    """Raised inside the search when the request ran past `time_limit_s`."""


class ScorerError(Exception):
    """A cost model, reward model or critic failed; the search fails closed.

    Attributes:
        reason: The fallback reason: `cost_model_error`, `reward_model_error` or `critic_error`.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Candidate:
    """One sampled response prefix (a beam once it is kept).

    Attributes:
        tokens: Response token ids so far (no end-of-sequence or pad tokens).
        text: Decoded response text, cut before a stop string.
        history: Texts of every block-boundary prefix, each checked by the cost model.
        safety: The safety state after the latest block.
        finish_reason: `"stop"`, `"length"` or `None` while live.
        logprob: Sum of the model's log-probabilities of `tokens`.
        p_safe: The critic's estimate, or `None` without a critic.
        safe: Not violated and, with a critic, `p_safe >= critic_threshold` (finished
            candidates included, so a critic can veto an answer but never approve a violated one).
        score: `v_task`, the reward or the mean log-probability when safe; else
            `-penalty - (C - d)`.
    """

    tokens: list[int]
    text: str
    history: tuple[str, ...]
    safety: SafetyState
    finish_reason: str | None = None
    logprob: float = 0.0
    p_safe: float | None = None
    safe: bool = False
    score: float = 0.0

    @property
    def finished(self) -> bool:
        """Whether the candidate ended (end-of-sequence, stop string or length)."""
        return self.finish_reason is not None

    @property
    def violated(self) -> bool:
        """Whether any prefix of the candidate was over the budget."""
        return self.safety.violated


@dataclass
class SearchOutcome:
    """What the search found.

    Attributes:
        answer: The certified answer, or `None` when the fallback applies.
        final_cost: Cost of the answer's exact text from the final check.
        fallback_reason: Why there is no answer.
        error: Details of a scorer failure or of the time limit.
        best_uncertified: The best other candidate that extends the committed text, for the
            `best_effort` fallback.
        committed: Text committed to the stream.
    """

    answer: Candidate | None
    final_cost: float | None
    fallback_reason: str | None
    error: str | None
    best_uncertified: Candidate | None
    committed: str


@dataclass
class _Block:
    candidates: list[Candidate]
    sample: BlockSample


class GuardedSearch:
    """One guarded decoding request: the fast path, the full search and the answer check.

    Args:
        lm: The language model wrapper.
        cost_model: Scores unsafety; the claim is made with respect to it.
        reward_model: Scores helpfulness when there is no critic, or `None`.
        critic: The latent critic, or `None`.
        config: The request's settings.
        budget: The safety budget `d`.
        prompt_ids: The prompt's token ids.
        prompt_text: The prompt `x` given to the scorers.
        generator: The request's random generator.
        cancel_event: Set by the caller to stop the request between steps.
        stats: Counters and timings, filled in place.
    """

    def __init__(
        self,
        *,
        lm: LanguageModel,
        cost_model: CostModel,
        reward_model: RewardModel | None,
        critic: Critic | None,
        config: GuardConfig,
        budget: float,
        prompt_ids: Sequence[int],
        prompt_text: str,
        generator: torch.Generator,
        cancel_event: threading.Event | None = None,
        stats: SearchStats | None = None,
    ) -> None:
        self.lm = lm
        self.cost_model = cost_model
        self.reward_model = reward_model
        self.critic = critic
        self.config = config
        self.budget = budget
        self.prompt_ids = list(prompt_ids)
        self.prompt_text = prompt_text
        self.generator = generator
        self.cancel_event = cancel_event
        self.stats = stats if stats is not None else SearchStats()
        self.stop_strings = StopStrings(config.stop)
        self.tracker = CommitTracker(self.stop_strings)
        self.pool: list[Candidate] = []
        self.beams: list[Candidate] = []
        self._cost_cache: dict[str, float] = {}
        self._hidden_layer = critic.layer if critic is not None else None
        self._deadline = (
            None if config.time_limit_s is None else time.monotonic() + config.time_limit_s
        )

    # --- the request ------------------------------------------------------------------------

    def run(self) -> Generator[str, None, SearchOutcome]:
        """Run the search, yielding committed text and returning the outcome.

        Raises:
            SearchCancelled: If `cancel_event` was set.
        """
        try:
            self.check_interrupt()
            with self._timed("prefill"):
                state = self.lm.prefill(self.prompt_ids, hidden_layer=self._hidden_layer)
            root = Candidate(
                tokens=[], text="", history=(), safety=SafetyState.initial(self.budget)
            )
            self.beams = [root]

            if self.config.fast_path:
                state = yield from self._fast_path(state)
            if self.beams:
                yield from self._full_search(state)
            return self._choose_answer()
        except TimeLimitExceeded as error:
            logger.info("Request stopped at the time limit: %s", error)
            return self._fallback_outcome("time_limit", str(error))
        except ScorerError as error:
            logger.warning("Failing closed because a scorer failed (%s): %s", error.reason, error)
            return self._fallback_outcome(error.reason, str(error))

    def check_interrupt(self) -> None:
        """Raise if the caller cancelled the request or its time limit has passed."""
        if self.cancel_event is not None and self.cancel_event.is_set():
            raise SearchCancelled
        if self._deadline is not None and time.monotonic() > self._deadline:
            msg = f"the request exceeded time_limit_s={self.config.time_limit_s}"
            raise TimeLimitExceeded(msg)

    # --- fast path --------------------------------------------------------------------------

    def _fast_path(self, state: DecodeState) -> Generator[str, None, DecodeState]:
        """Decode one beam, one candidate per block, while it stays clearly safe.

        Returns the state of the last accepted prefix. On return `self.beams` is either empty
        (the fast path finished the answer) or that one beam, for the full search to resample
        the block that fell below the margins.
        """
        config = self.config
        while True:
            beam = self.beams[0]
            block = self._sample_and_score(self.beams, state, repeats=1, penalty=None)
            candidate = block.candidates[0]
            self.stats.fast_path_blocks += 1

            clear = not candidate.violated and candidate.safety.z >= config.fast_path_margin
            if self.critic is not None:
                threshold = config.critic_threshold + config.fast_path_critic_margin
                clear = clear and candidate.p_safe is not None and candidate.p_safe >= threshold
            if not clear:
                logger.debug(
                    "Fast path branches at position %d (z=%.4g, p_safe=%s).",
                    state.position,
                    candidate.safety.z,
                    candidate.p_safe,
                )
                self.stats.branched = True
                self.beams = [beam]
                return state

            if candidate.finished:
                self.pool.append(candidate)
                self.beams = []
            else:
                self.beams = [candidate]
                state = block.sample.state
            delta = self._commit()
            if delta:
                yield delta
            if not self.beams:
                return state

    # --- full search ------------------------------------------------------------------------

    def _full_search(self, state: DecodeState) -> Generator[str, None, None]:
        """Run the block-wise search from `self.beams` until no beam is live."""
        config = self.config
        repeats = config.candidates_per_beam
        while self.beams:
            block = self._sample_and_score(self.beams, state, repeats=repeats, penalty=None)

            penalty: torch.Tensor | None = None
            for _ in range(config.max_resample_rounds):
                if any(c.safe for c in block.candidates):
                    break
                penalty = self._accumulate_penalty(penalty, block)
                self.stats.resample_rounds += 1
                block = self._sample_and_score(self.beams, state, repeats=repeats, penalty=penalty)

            state = self._keep_top(block)
            delta = self._commit()
            if delta:
                yield delta

    def _accumulate_penalty(self, penalty: torch.Tensor | None, block: _Block) -> torch.Tensor:
        unsafe = [
            (tokens, candidate.safety.overshoot)
            for candidate, tokens in zip(block.candidates, block.sample.new_tokens, strict=True)
            if not candidate.safe
        ]
        vocab_size = int(block.sample.state.next_logits.shape[-1])
        new = unsafe_token_penalty(
            [tokens for tokens, _ in unsafe],
            [overshoot for _, overshoot in unsafe],
            vocab_size=vocab_size,
            strength=self.config.resample_penalty,
            protected_ids=self.lm.eos_token_ids,
        )
        return new if penalty is None else penalty + new

    def _keep_top(self, block: _Block) -> DecodeState:
        """Move finished candidates to the pool and keep the top `K` live ones as beams.

        Violated candidates are dropped unless the fallback is `best_effort`, where they fill
        the beams that non-violated candidates leave free.
        """
        live: list[tuple[int, Candidate]] = []
        for index, candidate in enumerate(block.candidates):
            if candidate.finished:
                self.pool.append(candidate)
            else:
                live.append((index, candidate))

        ranked = sorted(
            (item for item in live if not item[1].violated), key=lambda item: -item[1].score
        )
        if self.config.fallback == "best_effort":
            ranked += sorted(
                (item for item in live if item[1].violated), key=lambda item: -item[1].score
            )
        kept = ranked[: self.config.num_beams]
        self.beams = [candidate for _, candidate in kept]
        if not kept:
            return block.sample.state
        return block.sample.state.select([index for index, _ in kept])

    def _commit(self) -> str:
        # Only sequences that can still become the answer may shape the committed text.
        live = [c.history for c in self.beams if not c.violated]
        eligible = live + [c.history for c in self.pool if c.safe]
        return self.tracker.update(eligible)

    # --- one block --------------------------------------------------------------------------

    def _sample_and_score(
        self,
        beams: list[Candidate],
        state: DecodeState,
        *,
        repeats: int,
        penalty: torch.Tensor | None,
    ) -> _Block:
        """Sample `repeats` continuations of every beam for one block and score them."""
        self.check_interrupt()
        config = self.config
        processors = sampling_processors(
            temperature=config.temperature,
            top_p=config.top_p,
            suppress_ids=self.lm.suppressed_token_ids,
            penalty=penalty,
        )
        parents = [beam for beam in beams for _ in range(repeats)]
        num_steps = min(config.block_size, config.max_new_tokens - state.position)

        with self._timed("sampling"):
            expanded = state.repeat(repeats) if repeats > 1 else state
            sample = self.lm.sample_block(
                expanded,
                [parent.tokens for parent in parents],
                num_steps=num_steps,
                max_new_tokens=config.max_new_tokens,
                processors=processors,
                generator=self.generator,
                stop_strings=self.stop_strings,
                hidden_layer=self._hidden_layer,
                check_interrupt=self.check_interrupt,
            )
        self.stats.blocks += 1
        self.stats.candidates_sampled += len(parents)

        candidates = [
            Candidate(
                tokens=[*parent.tokens, *new],
                text=text,
                history=parent.history,
                safety=parent.safety,
                finish_reason=reason,
                logprob=parent.logprob + logprob,
            )
            for parent, new, text, reason, logprob in zip(
                parents,
                sample.new_tokens,
                sample.texts,
                sample.finish_reasons,
                sample.logprobs,
                strict=True,
            )
        ]
        self.check_interrupt()
        self._update_safety(candidates)
        self._apply_critic(candidates, sample)
        self._score(candidates)
        logger.debug(
            "Block at position %d: %d candidates, %d safe, %d violated.",
            sample.state.position,
            len(candidates),
            sum(c.safe for c in candidates),
            sum(c.violated for c in candidates),
        )
        return _Block(candidates=candidates, sample=sample)

    def _update_safety(self, candidates: list[Candidate]) -> None:
        """Score the texts of non-violated candidates and advance their safety states."""
        open_ = [c for c in candidates if not c.violated]
        costs = self.cost_of([c.text for c in open_])
        for candidate, cost in zip(open_, costs, strict=True):
            candidate.safety = candidate.safety.advance(cost)
            candidate.history = (*candidate.history, candidate.text)

    def cost_of(self, texts: Sequence[str], *, use_cache: bool = True) -> list[float]:
        """Return the cost of each response text; repeated texts are scored once per request.

        Raises:
            ScorerError: If the cost model raises or returns invalid scores.
        """
        unique = list(dict.fromkeys(t for t in texts if not (use_cache and t in self._cost_cache)))
        if unique:
            with self._timed("cost"):
                try:
                    raw = self.cost_model.score([self.prompt_text] * len(unique), unique)
                    scores = check_scores(raw, len(unique), self.cost_model.name)
                except Exception as error:  # any scorer failure must fail closed
                    message = f"cost model {self.cost_model.name!r} failed: {error!r}"
                    raise ScorerError("cost_model_error", message) from error
            self.stats.cost_calls += len(unique)
            if not use_cache:
                return [scores[unique.index(t)] for t in texts]
            self._cost_cache.update(zip(unique, scores, strict=True))
        return [self._cost_cache[t] for t in texts]

    def _apply_critic(self, candidates: list[Candidate], sample: BlockSample) -> None:
        """Set `p_safe` and `safe` on every candidate, with one critic call for the block."""
        threshold = self.config.critic_threshold
        if self.critic is None or sample.state.hidden is None:
            for candidate in candidates:
                candidate.safe = not candidate.violated
            return

        z = torch.tensor([c.safety.z for c in candidates], dtype=torch.float32)
        with self._timed("critic"):
            try:
                with torch.no_grad():
                    p_safe, v_task = self.critic.predict(sample.state.hidden, z)
                p_values = _as_floats(p_safe, len(candidates), "p_safe")
                v_values = _as_floats(v_task, len(candidates), "v_task")
            except Exception as error:  # any critic failure must fail closed
                message = f"critic {getattr(self.critic, 'name', self.critic)!r} failed: {error!r}"
                raise ScorerError("critic_error", message) from error
        self.stats.critic_calls += len(candidates)

        for candidate, p, v in zip(candidates, p_values, v_values, strict=True):
            candidate.p_safe = p
            candidate.score = v
            # The critic gates finished candidates too: it can veto an answer (failing closed),
            # but a violated safety state stays unsafe whatever the critic says.
            candidate.safe = not candidate.violated and p >= threshold

    def _score(self, candidates: list[Candidate]) -> None:
        """Set each candidate's score: the task value when safe, a penalty otherwise."""
        safe = [c for c in candidates if c.safe]
        if self.critic is None:
            if self.reward_model is not None and safe:
                rewards = self._rewards([c.text for c in safe])
                for candidate, reward in zip(safe, rewards, strict=True):
                    candidate.score = reward
            elif self.reward_model is None:
                for candidate in safe:
                    candidate.score = candidate.logprob / max(1, len(candidate.tokens))
        for candidate in candidates:
            if not candidate.safe:
                cost = candidate.safety.cost if candidate.safety.cost is not None else self.budget
                candidate.score = -self.config.penalty - (cost - self.budget)

    def _rewards(self, texts: list[str]) -> list[float]:
        assert self.reward_model is not None
        with self._timed("reward"):
            try:
                raw = self.reward_model.score([self.prompt_text] * len(texts), texts)
                rewards = check_scores(raw, len(texts), self.reward_model.name)
            except Exception as error:  # any scorer failure must fail closed
                message = f"reward model {self.reward_model.name!r} failed: {error!r}"
                raise ScorerError("reward_model_error", message) from error
        self.stats.reward_calls += len(texts)
        return rewards

    # --- the answer -------------------------------------------------------------------------

    def _choose_answer(self) -> SearchOutcome:
        """Return the best safe finished candidate that passes a fresh cost check."""
        committed = self.tracker.committed
        eligible = sorted(
            (c for c in self.pool if c.safe and c.text.startswith(committed)),
            key=lambda c: -c.score,
        )
        failed_final_check = False
        for candidate in eligible:
            (cost,) = self.cost_of([candidate.text], use_cache=False)
            if cost <= self.budget:
                candidate.safety = candidate.safety.advance(cost)
                return SearchOutcome(
                    answer=candidate,
                    final_cost=cost,
                    fallback_reason=None,
                    error=None,
                    best_uncertified=None,
                    committed=committed,
                )
            logger.warning(
                "A candidate failed the final cost check (cost %.4g > budget %.4g); "
                "trying the next one.",
                cost,
                self.budget,
            )
            failed_final_check = True
        reason = "final_check" if failed_final_check else "no_safe_candidate"
        return self._fallback_outcome(reason, None)

    def _fallback_outcome(self, reason: str, error: str | None) -> SearchOutcome:
        committed = self.tracker.committed
        others = [c for c in (*self.pool, *self.beams) if c.text.startswith(committed)]
        best = max(others, key=lambda c: c.score, default=None)
        return SearchOutcome(
            answer=None,
            final_cost=None,
            fallback_reason=reason,
            error=error,
            best_uncertified=best,
            committed=committed,
        )

    # --- helpers ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stats.add_time(phase, time.perf_counter() - start)


def _as_floats(values: Any, expected: int, name: str) -> list[float]:
    """Return critic outputs as finite floats, or raise `ValueError`."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().reshape(-1).cpu().tolist()
    floats = [float(v) for v in values]
    if len(floats) != expected:
        msg = f"critic returned {len(floats)} {name} values for {expected} candidates"
        raise ValueError(msg)
    if not all(math.isfinite(v) for v in floats):
        msg = f"critic returned non-finite {name} values"
        raise ValueError(msg)
    return floats
