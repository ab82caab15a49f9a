"""`ChatInferenceGuard`: a LangChain chat model that decodes through an InferenceGuard engine."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from langchain_inferenceguard._messages import convert_messages
from langchain_inferenceguard._settings import (
    CONFIG_ALIASES,
    SETTING_NAMES,
    check_settings,
    config_overrides,
    normalise_call_kwargs,
)
from langchain_inferenceguard._structured import (
    REFUSAL_FINISH_REASON,
    build_structured_output,
    response_format_instruction,
)
from langchain_inferenceguard._tool_calls import (
    ToolRequest,
    ToolTextFilter,
    resolve_tool_request,
    split_tool_output,
)

if TYPE_CHECKING:
    from shared_core.critic_base import Critic
    from shared_core.engine import InferenceGuard
    from shared_core.result import GuaranteeReport, GuardChunk, GuardResult, Usage
    from shared_core.scoring import CostModel, RewardModel

logger = logging.getLogger(__name__)

MODEL_PROVIDER = "inferenceguard"
"""The `model_provider` and LangSmith `ls_provider` of every response."""

_HOSTED_ONLY_PARAMS = ("api_key", "base_url", "max_retries", "organization")
"""Parameters of hosted chat models that have no meaning for a local model. They are accepted,
so that `ChatInferenceGuard` can replace such a model, and ignored with a warning."""

_REQUEST_ARGUMENTS = frozenset(
    {"stop", "tools", "tool_choice", "response_format", "model", "ls_structured_output_format"}
)
"""Per-call arguments other than the search settings."""

_default_guard: InferenceGuard | None = None
_default_guard_lock = threading.Lock()


def _load_shared_default_guard() -> InferenceGuard:
    """Return the default engine, loading it on the first call; every caller shares it."""
    global _default_guard
    with _default_guard_lock:
        if _default_guard is None:
            from shared_core.defaults import load_default_guard

            logger.info("Loading the default InferenceGuard engine (embedded models)")
            _default_guard = load_default_guard()
        return _default_guard


def _default_model_name() -> str:
    from shared_core.base_model import BASE_MODEL_NAME

    return BASE_MODEL_NAME


@dataclass
class _Request:
    """One engine request built from LangChain messages and call arguments."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    overrides: dict[str, Any]
    parse_tools: bool


class ChatInferenceGuard(BaseChatModel):
    """Chat model whose every response is decoded by InferenceGuard's safe search.

    Each response is certified with respect to the engine's cost model at its safety budget, or
    replaced by the fallback (a refusal by default, with `finish_reason="content_filter"`). The
    guarantee report is in `response_metadata["inferenceguard"]`. The claim covers only what
    that cost model measures.

    The constructor loads nothing. Pass an engine with `guard=` (one engine can serve many
    chat models), or leave it out to load the embedded default models on first use.

    Setup:
        ```bash
        pip install "inferenceguard[langchain]"
        ```

    Instantiate:
        ```python
        from langchain_inferenceguard import ChatInferenceGuard

        llm = ChatInferenceGuard.from_defaults(max_tokens=64, preset="fast", seed=0)
        # or, with your own model and cost model:
        llm = ChatInferenceGuard.from_model_id(
            "HuggingFaceTB/SmolLM2-360M-Instruct", cost_model=my_cost_model, max_tokens=128
        )
        ```

    Invoke:
        ```python
        message = llm.invoke([("system", "Be brief."), ("human", "Name a prime number.")])
        message.content
        message.response_metadata["inferenceguard"]["certified"]
        ```

    Stream:
        ```python
        for chunk in llm.stream("Tell me about cats."):
            print(chunk.text, end="")
        ```
        Only committed text is streamed: it passed the cost check, and the final answer
        extends it. Usage and the report arrive on the last chunk.

    Tool calling:
        ```python
        from langchain_core.tools import tool


        @tool
        def get_weather(city: str) -> str:
            \"\"\"Return the weather in a city.\"\"\"
            return "sunny"


        message = llm.bind_tools([get_weather]).invoke("Weather in Paris?")
        message.tool_calls
        ```
        The model writes calls as `<tool_call>` JSON, and the cost model checks them like any
        other generated text.

    Structured output:
        ```python
        from pydantic import BaseModel


        class City(BaseModel):
            name: str


        llm.with_structured_output(City, method="json_schema").invoke("Name a city.")
        ```
        A refusal raises `ModelRefusalError`, or is returned as `parsing_error` with
        `include_raw=True`.
    """

    guard: Any = Field(default=None, exclude=True)
    """The `shared_core.InferenceGuard` engine. `None` loads the embedded defaults on first
    use, shared by every chat model that also leaves it out."""

    model_name: str | None = Field(default=None, alias="model")
    """The base model's name. It defaults to the engine's and must match it when given."""

    temperature: float | None = None
    """Sampling temperature; `None` keeps the engine's. 0 runs near-greedy
    (`GREEDY_TEMPERATURE`), because the search needs a positive temperature."""

    max_tokens: int | None = None
    """Maximum number of new tokens; sets `GuardConfig.max_new_tokens`."""

    top_p: float | None = None
    """Nucleus sampling mass in (0, 1]."""

    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    """Stop strings, any number of tokens long: generation ends before the first one, which is
    not returned. A per-call `stop` replaces this list."""

    seed: int | None = None
    """Seed of each request's random generator; the same seed and settings give the same
    text in invoke, stream, ainvoke and astream."""

    timeout: float | None = None
    """Wall-clock limit of one request in seconds; past it the fallback applies. Sets
    `GuardConfig.time_limit_s`."""

    streaming: bool = False
    """Whether `invoke` runs through the streaming path (callbacks then get each chunk)."""

    preset: Literal["fast", "balanced", "paper"] | None = None
    """A `GuardConfig` preset for the search shape (block size, samples, beams, fast path);
    the other settings below apply on top of it."""

    budget: float | None = None
    """Safety budget `d`; `None` keeps the engine's (by default the cost model's threshold)."""

    penalty: float | None = None
    """Penalty `n` of the augmented score for unsafe candidates."""

    block_size: int | None = None
    """Tokens per block; the cost model runs at every block boundary."""

    num_samples: int | None = None
    """Candidates sampled per block in the full search."""

    num_beams: int | None = None
    """Beams kept after each block; `num_samples` must be a multiple of it."""

    max_resample_rounds: int | None = None
    """Rounds of logit penalty and resampling when every candidate of a block is unsafe."""

    resample_penalty: float | None = None
    """Logit penalty per resample round for tokens over-represented in unsafe candidates."""

    critic_threshold: float | None = None
    """Minimum critic `p_safe` for a candidate to count as safe."""

    fast_path: bool | None = None
    """Whether to decode one beam until the safety state nears the budget."""

    fast_path_margin: float | None = None
    """Safety-state margin below which the fast path branches into the full search."""

    fast_path_critic_margin: float | None = None
    """Critic margin below which the fast path branches into the full search."""

    fallback: Literal["refuse", "raise", "best_effort"] | None = None
    """What to return when no certified response exists: the refusal text, a
    `SafetyViolationError`, or the best uncertified response."""

    refusal_text: str | None = None
    """Text of the `"refuse"` fallback."""

    context_overflow: Literal["error", "truncate"] | None = None
    """On a prompt longer than the context window: raise, or drop the oldest turns."""

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=(), extra="forbid")

    # --- construction -------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _check_parameter_names(cls, values: Any) -> Any:
        if not isinstance(values, Mapping):
            return values
        accepted = set(cls.model_fields)
        accepted.update(field.alias for field in cls.model_fields.values() if field.alias)
        unknown = sorted(set(values) - accepted - set(_HOSTED_ONLY_PARAMS))
        if unknown:
            msg = (
                f"Unknown ChatInferenceGuard parameter(s) {unknown}. "
                f"Valid parameters: {sorted(accepted)}."
            )
            raise ValueError(msg)
        ignored = sorted(name for name in _HOSTED_ONLY_PARAMS if name in values)
        if not ignored:
            return values
        logger.warning(
            "ChatInferenceGuard runs a local model and ignores the hosted-model parameters %s",
            ignored,
        )
        return {name: value for name, value in values.items() if name not in ignored}

    @model_validator(mode="after")
    def _check_guard_and_settings(self) -> Self:
        if self.guard is not None:
            from shared_core.engine import InferenceGuard

            if not isinstance(self.guard, InferenceGuard):
                msg = (
                    f"guard must be a shared_core.InferenceGuard, got {type(self.guard).__name__}. "
                    "Build one with InferenceGuard(model, tokenizer, cost_model), or use "
                    "ChatInferenceGuard.from_model_id(...) or from_defaults(...)."
                )
                raise TypeError(msg)
            if self.model_name is not None and self.model_name != self.guard.model_name:
                msg = (
                    f"model_name={self.model_name!r} does not match the engine's model "
                    f"{self.guard.model_name!r}. Leave model_name out, or pass an engine for "
                    "that model."
                )
                raise ValueError(msg)
        elif self.model_name is not None and self.model_name != _default_model_name():
            msg = (
                f"model_name={self.model_name!r} needs an engine for that model: use "
                "ChatInferenceGuard.from_model_id(model_name, cost_model=...) or pass guard=. "
                f"Without an engine the default model {_default_model_name()!r} is used."
            )
            raise ValueError(msg)
        check_settings(self._settings())
        return self

    @classmethod
    def from_defaults(cls, **settings: Any) -> ChatInferenceGuard:
        """Create a chat model over the embedded default models, loaded on first use.

        Args:
            **settings: Chat model fields, e.g. `max_tokens=64, preset="fast", seed=0`.
        """
        return cls(**settings)

    @classmethod
    def from_model_id(
        cls,
        model_id: str,
        *,
        cost_model: CostModel,
        reward_model: RewardModel | None = None,
        critic: Critic | None = None,
        device: str | None = None,
        torch_dtype: Any = None,
        config: Any = None,
        model_kwargs: Mapping[str, Any] | None = None,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> ChatInferenceGuard:
        """Load a Hugging Face causal LM and its tokenizer, and wrap them in a new engine.

        Args:
            model_id: A Hub id or a local folder, as `AutoModelForCausalLM.from_pretrained`
                takes it. Set `HF_HUB_OFFLINE=1` to forbid downloads.
            cost_model: The cost model every response is certified against.
            reward_model: Scores helpfulness during the search; `None` uses the engine's
                default.
            critic: A latent critic trained for this model, or `None`.
            device: Torch device for the model, e.g. `"cpu"` or `"cuda"`; `None` keeps
                transformers' choice.
            torch_dtype: Weight dtype, e.g. `torch.float32`; `None` keeps transformers' choice.
            config: A `GuardConfig` for the engine; `None` uses the defaults.
            model_kwargs: More arguments for `AutoModelForCausalLM.from_pretrained`.
            tokenizer_kwargs: More arguments for `AutoTokenizer.from_pretrained`.
            **settings: Chat model fields, e.g. `max_tokens=128, temperature=0.7`.

        Returns:
            A chat model over a new engine, named `model_id`.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from shared_core.engine import InferenceGuard

        load_kwargs = dict(model_kwargs or {})
        if torch_dtype is not None:
            load_kwargs["dtype"] = torch_dtype
        tokenizer = AutoTokenizer.from_pretrained(model_id, **dict(tokenizer_kwargs or {}))
        model = AutoModelForCausalLM.from_pretrained(model_id, **load_kwargs)
        if device is not None:
            model = model.to(device)  # type: ignore[arg-type]
        model.eval()
        guard = InferenceGuard(
            model,
            tokenizer,
            cost_model,
            reward_model=reward_model,
            critic=critic,
            config=config,
            model_name=model_id,
        )
        return cls(guard=guard, **settings)

    def load_guard(self) -> InferenceGuard:
        """Return the engine, loading the shared default engine on first use."""
        if self.guard is not None:
            return self.guard  # type: ignore[no-any-return]
        return _load_shared_default_guard()

    async def _aload_guard(self) -> InferenceGuard:
        if self.guard is not None:
            return self.guard  # type: ignore[no-any-return]
        if _default_guard is not None:
            return _default_guard
        return await asyncio.to_thread(_load_shared_default_guard)

    # --- LangChain metadata -------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "inferenceguard-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """Parameters that identify the responses, so LangChain cache keys change with them."""
        overrides = config_overrides(self._settings())
        params: dict[str, Any] = {"model_name": self._resolved_model_name()}
        if self.guard is None:
            params["guard"] = "default"
            params["guard_overrides"] = _jsonable_overrides(overrides)
            return params
        guard = self.guard
        params["cost_model"] = guard.cost_model.name
        params["reward_model"] = getattr(guard.reward_model, "name", None)
        params["critic"] = getattr(guard.critic, "name", None)
        params["guard_config"] = guard.resolve_config(**overrides).to_dict()
        params["budget"] = params["guard_config"]["budget"]
        if params["budget"] is None:
            params["budget"] = guard.cost_model.threshold
        return params

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        model = kwargs.get("model")
        params = LangSmithParams(
            ls_provider=MODEL_PROVIDER,
            ls_model_name=model if isinstance(model, str) else self._resolved_model_name(),
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if isinstance(temperature, int | float):
            params["ls_temperature"] = float(temperature)
        max_tokens = kwargs.get("max_tokens", kwargs.get("max_new_tokens", self.max_tokens))
        if isinstance(max_tokens, int):
            params["ls_max_tokens"] = max_tokens
        stop_list = stop if stop is not None else kwargs.get("stop_sequences", self.stop)
        if stop_list:
            params["ls_stop"] = list(stop_list)
        return params

    def _resolve_model_profile(self) -> ModelProfile | None:
        profile = ModelProfile(
            open_weights=True,
            text_inputs=True,
            image_inputs=False,
            image_url_inputs=False,
            pdf_inputs=False,
            audio_inputs=False,
            video_inputs=False,
            text_outputs=True,
            tool_calling=True,
            tool_choice=True,
            # Tool calls reach the stream only with the last chunk (after the text is parsed).
            tool_call_streaming=False,
            # Structured output is parsed from text, not enforced by constrained decoding.
            structured_output=False,
        )
        if self.guard is not None:
            profile["max_input_tokens"] = self.guard.context_window
        return profile

    def _resolved_model_name(self) -> str:
        if self.guard is not None:
            return str(self.guard.model_name)
        if _default_guard is not None:
            return str(_default_guard.model_name)
        return self.model_name or _default_model_name()

    def _settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SETTING_NAMES}

    # --- tools and structured output ----------------------------------------------------------

    def bind(self, **kwargs: Any) -> Any:
        """Bind call arguments, e.g. `max_tokens=32` or `stop=["\\n"]`, checking their names.

        Raises:
            TypeError: If an argument is not a setting of this chat model.
        """
        _check_call_argument_names(kwargs)
        return super().bind(**kwargs)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools that the model may call with `<tool_call>` JSON.

        Args:
            tools: Tools as LangChain tools, Pydantic models, TypedDicts, functions or OpenAI
                tool schemas; they are converted with `convert_to_openai_tool`.
            tool_choice: `None`/`"auto"` (the model decides), `"none"`, `"any"`/`"required"`/
                `True` (the model is asked to call a tool), or a tool name. The request is a
                prompt instruction; decoding is not constrained.
            strict: Passed to `convert_to_openai_tool`. Arguments are not validated against
                the schema while decoding.
            **kwargs: More call arguments to bind, e.g. `max_tokens=64`.

        Raises:
            ValueError: If `tool_choice` names a tool that is not among `tools`.
        """
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        resolve_tool_request(formatted, tool_choice)
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)  # type: ignore[no-any-return]

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Return a runnable that returns an instance of `schema` for each input.

        Args:
            schema: A Pydantic class (answers are validated instances), a TypedDict class, a
                JSON schema or an OpenAI tool schema (answers are dicts). Optional only for
                `method="json_mode"`.
            method: `"function_calling"` requests a call of a tool named after the schema;
                `"json_schema"` puts the JSON schema in a system instruction and parses JSON
                from the text; `"json_mode"` requests any JSON object.
            include_raw: Return `{"raw", "parsed", "parsing_error"}` and report parsing
                errors there instead of raising.
            strict: Accepted for compatibility; the output is parsed, not constrained.

        Raises:
            ValueError: If `method` is unknown, the schema is missing, or `kwargs` is not
                empty.
            ModelRefusalError: At call time, when the engine returned its fallback answer
                (unless `include_raw=True`, which returns it as `parsing_error`).
        """
        if kwargs:
            msg = f"Unsupported with_structured_output arguments {sorted(kwargs)}."
            raise ValueError(msg)
        return build_structured_output(
            self, schema, method=method, include_raw=include_raw, strict=strict
        )

    # --- generation ---------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        guard = self.load_guard()
        request = self._prepare_request(messages, stop, kwargs)
        result = guard.generate(request.messages, tools=request.tools, **request.overrides)
        return self._chat_result(guard, result, request)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        guard = await self._aload_guard()
        request = self._prepare_request(messages, stop, kwargs)
        result = await guard.agenerate(request.messages, tools=request.tools, **request.overrides)
        return self._chat_result(guard, result, request)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        guard = self.load_guard()
        request = self._prepare_request(messages, stop, kwargs)
        text_filter = ToolTextFilter() if request.parse_tools else None
        chunks = guard.stream(request.messages, tools=request.tools, **request.overrides)
        try:
            for guard_chunk in chunks:
                chunk = self._chat_chunk(guard, guard_chunk, text_filter)
                if chunk is None:
                    continue
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
                if guard_chunk.is_last:
                    return
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        msg = "The InferenceGuard stream ended without a final chunk (no finish_reason)."
        raise RuntimeError(msg)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        guard = await self._aload_guard()
        request = self._prepare_request(messages, stop, kwargs)
        text_filter = ToolTextFilter() if request.parse_tools else None
        chunks = guard.astream(request.messages, tools=request.tools, **request.overrides)
        try:
            async for guard_chunk in chunks:
                chunk = self._chat_chunk(guard, guard_chunk, text_filter)
                if chunk is None:
                    continue
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
                if guard_chunk.is_last:
                    return
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
        msg = "The InferenceGuard stream ended without a final chunk (no finish_reason)."
        raise RuntimeError(msg)

    # --- token counting -----------------------------------------------------------------------

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Count the prompt tokens of `messages` (and `tools`) with the model's chat template.

        Loads the default engine if none was given.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools] if tools else None
        return int(self.load_guard().count_tokens(convert_messages(messages), tools=formatted))

    def get_token_ids(self, text: str) -> list[int]:
        """Tokenize `text` with the model's tokenizer, without special tokens."""
        return list(self.load_guard().tokenizer.encode(text, add_special_tokens=False))

    # --- request and response conversion ------------------------------------------------------

    def _prepare_request(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> _Request:
        arguments = dict(kwargs)
        arguments.pop("ls_structured_output_format", None)
        tools = arguments.pop("tools", None)
        tool_choice = arguments.pop("tool_choice", None)
        response_format = arguments.pop("response_format", None)
        model = arguments.pop("model", None)
        if model is not None and model != self._resolved_model_name():
            msg = (
                f"model={model!r} was requested, but this chat model runs "
                f"{self._resolved_model_name()!r} and cannot switch models per call. Create "
                "another ChatInferenceGuard for that model."
            )
            raise ValueError(msg)

        _check_call_argument_names(arguments)
        call_settings = normalise_call_kwargs(arguments)
        if stop is not None:
            call_settings["stop"] = stop
        settings = self._settings()
        settings.update({name: value for name, value in call_settings.items() if value is not None})
        overrides = config_overrides(settings)

        tool_request: ToolRequest = resolve_tool_request(tools, tool_choice)
        engine_messages = convert_messages(messages)
        for instruction in (tool_request.instruction, response_format_instruction(response_format)):
            if instruction:
                _add_system_instruction(engine_messages, instruction)
        return _Request(
            messages=engine_messages,
            tools=tool_request.tools,
            overrides=overrides,
            parse_tools=tool_request.parse_calls,
        )

    def _chat_result(
        self, guard: InferenceGuard, result: GuardResult, request: _Request
    ) -> ChatResult:
        metadata = _response_metadata(guard, result.finish_reason, result.report)
        usage = _usage_metadata(result.usage)
        if request.parse_tools:
            output = split_tool_output(
                result.text, parse_calls=result.finish_reason != REFUSAL_FINISH_REASON
            )
            message = AIMessage(
                content=output.content,
                tool_calls=output.tool_calls,
                invalid_tool_calls=output.invalid_tool_calls,
                usage_metadata=usage,
                response_metadata=metadata,
            )
        else:
            message = AIMessage(
                content=result.text, usage_metadata=usage, response_metadata=metadata
            )
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": guard.model_name, "token_usage": result.usage.to_dict()},
        )

    def _chat_chunk(
        self,
        guard: InferenceGuard,
        guard_chunk: GuardChunk,
        text_filter: ToolTextFilter | None,
    ) -> ChatGenerationChunk | None:
        """Convert one engine chunk; `None` when it releases no text and is not the last."""
        text = guard_chunk.text if text_filter is None else text_filter.push(guard_chunk.text)
        if not guard_chunk.is_last:
            return ChatGenerationChunk(message=AIMessageChunk(content=text)) if text else None

        tool_call_chunks = []
        if text_filter is not None:
            rest, output = text_filter.finish(
                parse_calls=guard_chunk.finish_reason != REFUSAL_FINISH_REASON
            )
            text += rest
            tool_call_chunks = output.tool_call_chunks()
        if guard_chunk.usage is None or guard_chunk.report is None:
            msg = "The last InferenceGuard stream chunk has no usage or report."
            raise RuntimeError(msg)
        message = AIMessageChunk(
            content=text,
            tool_call_chunks=tool_call_chunks,
            usage_metadata=_usage_metadata(guard_chunk.usage),
            response_metadata=_response_metadata(
                guard, guard_chunk.finish_reason, guard_chunk.report
            ),
            chunk_position="last",
        )
        return ChatGenerationChunk(message=message)


def _check_call_argument_names(arguments: Mapping[str, Any]) -> None:
    valid = SETTING_NAMES | _REQUEST_ARGUMENTS | CONFIG_ALIASES.keys()
    unknown = sorted(set(arguments) - valid)
    if unknown:
        msg = (
            f"Unknown argument(s) {unknown} for ChatInferenceGuard. "
            f"Valid call arguments: {sorted(valid)}."
        )
        raise TypeError(msg)


def _add_system_instruction(messages: list[dict[str, Any]], instruction: str) -> None:
    if messages and messages[0]["role"] == "system":
        content = messages[0].get("content") or ""
        messages[0] = {**messages[0], "content": f"{content}\n\n{instruction}".strip()}
    else:
        messages.insert(0, {"role": "system", "content": instruction})


def _usage_metadata(usage: Usage) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _response_metadata(
    guard: InferenceGuard, finish_reason: str | None, report: GuaranteeReport
) -> dict[str, Any]:
    return {
        "model_name": guard.model_name,
        "model_provider": MODEL_PROVIDER,
        "finish_reason": finish_reason,
        MODEL_PROVIDER: report.to_dict(),
    }


def _jsonable_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in sorted(overrides.items())
    }
