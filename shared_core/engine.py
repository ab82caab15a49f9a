"""`InferenceGuard`: guarded generation for a local Hugging Face causal LM.

One engine owns the model, tokenizer, cost model, reward model and critic, and serves any number
of threads, asyncio tasks and adapter instances. A lock serialises requests on the model; the
async methods run the request in a worker thread, so the event loop does not wait for decoding.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from shared_core.chat import (
    Messages,
    encode_messages,
    fit_context,
    normalize_messages,
    prompt_text,
    validate_tools,
)
from shared_core.config import GuardConfig
from shared_core.critic_base import Critic
from shared_core.lm import LanguageModel
from shared_core.result import (
    GuaranteeReport,
    GuardChunk,
    GuardResult,
    SafetyViolationError,
    SearchStats,
    Usage,
)
from shared_core.scoring import CostModel, RewardModel
from shared_core.search import GuardedSearch, SearchCancelled, SearchOutcome

logger = logging.getLogger(__name__)

Tools = Sequence[Mapping[str, Any]] | None

REFUSAL_SEPARATOR = "\n\n"
"""Put between committed text and the refusal text when the fallback fires mid-stream."""


@dataclass
class _Request:
    """A validated request; `encode` adds the prompt's token ids."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    config: GuardConfig
    prompt_ids: list[int] | None = None
    prompt_text: str = ""


class InferenceGuard:
    """Safe decoding with respect to a cost model and a safety budget (InferenceGuard).

    The search decodes in blocks, keeps the cost of every block prefix within the budget `d`
    (the safety state `z = d - C(x, y_k)` never goes negative on an answer), resamples with a
    logit penalty when every candidate is unsafe, and returns either a response whose exact
    text the cost model scored within the budget, or the configured fallback. The claim is
    always "with respect to cost model X at budget d": harms the cost model does not measure
    are not covered.

    The constructor only stores its arguments and switches the model to eval mode; it loads
    nothing.

    Args:
        model: A Hugging Face causal LM (transformers 5.x), frozen.
        tokenizer: Its tokenizer, with a chat template.
        cost_model: Scores unsafety (see `shared_core.scoring.CostModel`).
        reward_model: Scores helpfulness, used to rank safe candidates when there is no
            critic. Without both, safe candidates are ranked by their mean token
            log-probability under the model.
        critic: A latent critic trained for this model, or `None`.
        config: Default settings; per-call keyword arguments override them.
        model_name: Name reported for the model. Defaults to `model.name_or_path`.

    Example:
        >>> from shared_core import CallableCostModel, InferenceGuard
        >>> cost = CallableCostModel(lambda x, y: float("bomb" in y.lower()), threshold=0.5)
        >>> guard = InferenceGuard(model, tokenizer, cost)  # doctest: +SKIP
        >>> result = guard.generate("Tell me a joke.", max_new_tokens=64, seed=0)  # doctest: +SKIP
        >>> result.report.claim  # doctest: +SKIP
        "certified with respect to cost model '<lambda>' at budget 0.5 (final cost 0)"
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        cost_model: CostModel,
        reward_model: RewardModel | None = None,
        critic: Critic | None = None,
        config: GuardConfig | None = None,
        *,
        model_name: str | None = None,
    ) -> None:
        if config is not None and not isinstance(config, GuardConfig):
            msg = f"Invalid config of type {type(config).__name__}: pass a GuardConfig or None."
            raise TypeError(msg)
        _check_scorer(
            cost_model, "cost_model", needs_threshold=config is None or config.budget is None
        )
        if reward_model is not None:
            _check_scorer(reward_model, "reward_model", needs_threshold=False)
        if critic is not None and not (
            callable(getattr(critic, "predict", None))
            and isinstance(getattr(critic, "layer", None), int)
        ):
            msg = (
                f"Invalid critic {critic!r}: it needs predict(hidden, z) and an int layer "
                "(see shared_core.critic_base.Critic)."
            )
            raise TypeError(msg)

        self.model = model
        self.tokenizer = tokenizer
        self.cost_model = cost_model
        self.reward_model = reward_model
        self.critic = critic
        self.config = config or GuardConfig()
        self.model_name = model_name or _default_model_name(model)
        if hasattr(model, "eval"):
            model.eval()
        self.lm = LanguageModel(model, tokenizer)

        self._lock = threading.Lock()
        self._lock_owner: int | None = None
        self._critic_checked = critic is None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"InferenceGuard(model={self.model_name!r}, cost_model={self.cost_model.name!r}, "
            f"budget={self.budget}, critic={getattr(self.critic, 'name', None)!r})"
        )

    # --- settings and prompts ---------------------------------------------------------------

    @property
    def budget(self) -> float:
        """Default safety budget `d`: `config.budget`, else the cost model's threshold."""
        return _budget(self.config, self.cost_model)

    @property
    def context_window(self) -> int:
        """Maximum prompt plus response length of the model, in tokens."""
        return self.lm.context_window

    def resolve_config(self, **overrides: Any) -> GuardConfig:
        """Return the engine's settings with per-call overrides applied.

        Overrides whose value is `None` are ignored, so adapters can pass unset options
        through; set `None`-able fields such as `seed` on the engine's config instead.

        Raises:
            TypeError: If an override is not a `GuardConfig` setting.
            ValueError: If an override value is invalid.
        """
        changes = {name: value for name, value in overrides.items() if value is not None}
        return self.config.replace(**changes) if changes else self.config

    def encode_prompt(
        self, messages: Messages, *, tools: Tools = None, config: GuardConfig | None = None
    ) -> list[int]:
        """Return the prompt's token ids, fitted to the context window per `context_overflow`.

        Raises:
            ValueError: If the messages are invalid or the prompt does not fit.
        """
        config = config or self.config
        ids, _ = fit_context(
            self.tokenizer,
            normalize_messages(messages),
            validate_tools(tools),
            max_new_tokens=config.max_new_tokens,
            context_window=self.context_window,
            overflow=config.context_overflow,
        )
        return ids

    def count_tokens(self, messages: Messages, *, tools: Tools = None) -> int:
        """Return the number of prompt tokens of `messages`, without any truncation."""
        return len(
            encode_messages(self.tokenizer, normalize_messages(messages), validate_tools(tools))
        )

    # --- synchronous API --------------------------------------------------------------------

    def generate(self, messages: Messages, *, tools: Tools = None, **overrides: Any) -> GuardResult:
        """Generate a guarded response to `messages` by consuming `stream`.

        Because both share one code path, the same seed gives the same text.

        Args:
            messages: A string (one user message) or a list of chat messages
                `{"role": "system"|"user"|"assistant"|"tool", "content": str}`, where assistant
                messages may carry `tool_calls`.
            tools: JSON schemas of the tools the model may call.
            **overrides: `GuardConfig` settings for this call (e.g. `max_new_tokens`, `seed`).

        Returns:
            The certified answer, or the fallback (see `stream` for its text).

        Raises:
            SafetyViolationError: With `fallback="raise"` when no certified answer exists.
            ValueError: On invalid messages, settings or a prompt that does not fit.
            TypeError: On an unknown setting.
        """
        request = self._prepare(messages, tools, overrides)
        return self._collect(self._stream_request(request, cancel_event=None))

    def stream(
        self, messages: Messages, *, tools: Tools = None, **overrides: Any
    ) -> Iterator[GuardChunk]:
        """Stream the answer to `messages` as committed chunks.

        A chunk holds only committed text: a block-boundary prefix that the cost model scored
        within the budget and that every answer-eligible candidate shares, so the final text
        always starts with everything streamed before. The last chunk carries
        `finish_reason`, `usage` and the report.

        When no certified answer exists after text was committed, the fallback cannot take
        that text back:
            `refuse`: the refusal text follows the committed text, separated by a blank line
                (`finish_reason="content_filter"`).
            `raise`: `SafetyViolationError` is raised; its `partial_text` is the committed text.
            `best_effort`: the best uncertified candidate that extends the committed text.

        Validation and tokenization happen on the call; the search starts on the first
        `next()`. The request
        holds the engine's lock until the iterator is exhausted or closed, so iterate it to the
        end or close it (`contextlib.closing`) before starting another request in this thread.

        Args and Raises: as in `generate`.
        """
        request = self._prepare(messages, tools, overrides)
        self._encode(request)
        return self._stream_request(request, cancel_event=None)

    # --- asynchronous API -------------------------------------------------------------------

    async def agenerate(
        self, messages: Messages, *, tools: Tools = None, **overrides: Any
    ) -> GuardResult:
        """Async `generate`: the request runs in the engine's worker thread.

        Cancelling the awaiting task stops the search at its next step.
        """
        request = self._prepare(messages, tools, overrides)
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._worker(), lambda: self._collect(self._stream_request(request, cancel))
        )
        try:
            return await future
        except asyncio.CancelledError:
            cancel.set()
            raise

    def astream(
        self, messages: Messages, *, tools: Tools = None, **overrides: Any
    ) -> AsyncIterator[GuardChunk]:
        """Async `stream`: chunks come from the engine's worker thread through a queue.

        Settings and messages are validated on the call; tokenization runs in the worker. If
        the consumer stops early or is cancelled, the worker stops at its next step.
        """
        request = self._prepare(messages, tools, overrides)
        return self._astream_request(request)

    async def _astream_request(self, request: _Request) -> AsyncIterator[GuardChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        done = object()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is closed, so no consumer can receive chunks
                cancel.set()

        def work() -> None:
            try:
                with contextlib.closing(self._stream_request(request, cancel)) as chunks:
                    for chunk in chunks:
                        put(chunk)
                        if cancel.is_set():
                            return
                put(done)
            except BaseException as error:  # handed to the consumer to re-raise
                put(_WorkerError(error))

        loop.run_in_executor(self._worker(), work)
        try:
            while True:
                item = await queue.get()
                if item is done:
                    return
                if isinstance(item, _WorkerError):
                    raise item.error
                yield item
                if item.is_last:
                    return
        finally:
            cancel.set()

    def _worker(self) -> concurrent.futures.ThreadPoolExecutor:
        """Return the engine's single worker thread, created on first use."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="inferenceguard"
                )
            return self._executor

    # --- one request ------------------------------------------------------------------------

    def _prepare(self, messages: Messages, tools: Tools, overrides: Mapping[str, Any]) -> _Request:
        config = self.resolve_config(**overrides)
        _budget(config, self.cost_model)  # fails early when there is no budget at all
        return _Request(
            messages=normalize_messages(messages), tools=validate_tools(tools), config=config
        )

    def _encode(self, request: _Request) -> None:
        """Tokenize the request's prompt, fitted to the context window, once."""
        if request.prompt_ids is not None:
            return
        config = request.config
        ids, messages = fit_context(
            self.tokenizer,
            request.messages,
            request.tools,
            max_new_tokens=config.max_new_tokens,
            context_window=self.context_window,
            overflow=config.context_overflow,
        )
        request.prompt_ids = ids
        request.prompt_text = prompt_text(messages)

    def _collect(self, chunks: Generator[GuardChunk, None, None]) -> GuardResult:
        parts: list[str] = []
        with contextlib.closing(chunks):
            for chunk in chunks:
                parts.append(chunk.text)
                if chunk.is_last:
                    assert chunk.usage is not None and chunk.report is not None
                    return GuardResult(
                        text="".join(parts),
                        finish_reason=chunk.finish_reason,  # type: ignore[arg-type]
                        usage=chunk.usage,
                        report=chunk.report,
                    )
        msg = "The request was cancelled before it finished."
        raise RuntimeError(msg)

    def _stream_request(
        self, request: _Request, cancel_event: threading.Event | None
    ) -> Generator[GuardChunk, None, None]:
        """Run one request under the model lock, yielding committed chunks, then the last one."""
        config = request.config
        with self._model_lock():
            started = time.perf_counter()
            self._check_critic()
            self._encode(request)
            assert request.prompt_ids is not None
            prompt_ids = request.prompt_ids
            seed = (
                config.seed if config.seed is not None else random.SystemRandom().randrange(2**63)
            )
            generator = torch.Generator(device=self.lm.device).manual_seed(seed)
            stats = SearchStats()
            search = GuardedSearch(
                lm=self.lm,
                cost_model=self.cost_model,
                reward_model=self.reward_model,
                critic=self.critic,
                config=config,
                budget=_budget(config, self.cost_model),
                prompt_ids=prompt_ids,
                prompt_text=request.prompt_text,
                generator=generator,
                cancel_event=cancel_event,
                stats=stats,
            )
            logger.debug("Request with %d prompt tokens, seed %d.", len(prompt_ids), seed)

            run = search.run()
            try:
                while True:
                    try:
                        delta = next(run)
                    except StopIteration as stop:
                        outcome: SearchOutcome = stop.value
                        break
                    yield GuardChunk(text=delta)
            except SearchCancelled:
                logger.debug("Request cancelled by the caller.")
                return
            finally:
                run.close()

            stats.add_time("total", time.perf_counter() - started)
            yield self._last_chunk(outcome, config, search.budget, len(prompt_ids), stats)

    def _last_chunk(
        self,
        outcome: SearchOutcome,
        config: GuardConfig,
        budget: float,
        prompt_tokens: int,
        stats: SearchStats,
    ) -> GuardChunk:
        """Build the last chunk: the rest of the answer or of the fallback, usage and report.

        `usage.completion_tokens` counts the tokens the model generated for the returned
        candidate (at most `max_new_tokens`). For a refusal, which the model did not generate,
        it is the token count of the returned text encoded alone.

        Raises:
            SafetyViolationError: With `fallback="raise"` when there is no certified answer.
        """
        committed = outcome.committed
        report = GuaranteeReport(
            certified=False,
            cost_model=self.cost_model.name,
            budget=budget,
            final_cost=None,
            min_safety_state=None,
            reward_model=getattr(self.reward_model, "name", None),
            critic=getattr(self.critic, "name", None),
            stats=stats,
        )
        answer = outcome.answer
        if answer is not None:
            report.certified = True
            report.final_cost = outcome.final_cost
            report.min_safety_state = answer.safety.min_z
            text = answer.text
            completion_tokens = len(answer.tokens)
            finish_reason = answer.finish_reason or "length"
        else:
            report.fallback = config.fallback
            report.fallback_reason = outcome.fallback_reason  # type: ignore[assignment]
            report.error = outcome.error
            finish_reason = "content_filter"
            best = outcome.best_uncertified
            if config.fallback == "raise":
                msg = (
                    f"No answer certified with respect to cost model {self.cost_model.name!r} "
                    f"at budget {budget:.4g} ({outcome.fallback_reason})."
                )
                raise SafetyViolationError(msg, report, partial_text=committed)
            if config.fallback == "best_effort" and best is not None:
                text = best.text
                completion_tokens = len(best.tokens)
                report.min_safety_state = best.safety.min_z
            else:
                text = committed + (REFUSAL_SEPARATOR if committed else "") + config.refusal_text
                completion_tokens = self.lm.count_text_tokens(text)
            logger.info(
                "Fallback %r used (%s) with respect to cost model %r.",
                config.fallback,
                outcome.fallback_reason,
                self.cost_model.name,
            )

        assert text.startswith(committed), "returned text must extend the streamed text"
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return GuardChunk(
            text=text[len(committed) :],
            finish_reason=finish_reason,  # type: ignore[arg-type]
            usage=usage,
            report=report,
        )

    @contextlib.contextmanager
    def _model_lock(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._lock_owner == me:
            msg = (
                "This thread already has an open request on this InferenceGuard (an unfinished "
                "stream). Iterate it to the end or close it before starting another request."
            )
            raise RuntimeError(msg)
        with self._lock:
            self._lock_owner = me
            try:
                yield
            finally:
                self._lock_owner = None

    def _check_critic(self) -> None:
        if not self._critic_checked and self.critic is not None:
            self.critic.check_compatible(self.model)
            self._critic_checked = True


@dataclass
class _WorkerError:
    error: BaseException


def _budget(config: GuardConfig, cost_model: CostModel) -> float:
    if config.budget is not None:
        return float(config.budget)
    threshold = getattr(cost_model, "threshold", None)
    if not isinstance(threshold, int | float) or not math.isfinite(threshold):
        msg = (
            f"No safety budget: cost model {getattr(cost_model, 'name', cost_model)!r} has "
            f"threshold={threshold!r}. Set GuardConfig(budget=...) or give the cost model a "
            "finite threshold."
        )
        raise ValueError(msg)
    return float(threshold)


def _check_scorer(scorer: Any, argument: str, *, needs_threshold: bool) -> None:
    if not callable(getattr(scorer, "score", None)) or not isinstance(
        getattr(scorer, "name", None), str
    ):
        msg = (
            f"Invalid {argument} {scorer!r}: it needs a str `name` and a "
            "`score(prompts, responses) -> list[float]` method (see shared_core.scoring)."
        )
        raise TypeError(msg)
    if needs_threshold:
        _budget(GuardConfig(), scorer)


def _default_model_name(model: Any) -> str:
    for name in (
        getattr(model, "name_or_path", None),
        getattr(getattr(model, "config", None), "_name_or_path", None),
    ):
        if isinstance(name, str) and name:
            return name
    return type(model).__name__
