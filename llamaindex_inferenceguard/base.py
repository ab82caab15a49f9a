"""`InferenceGuardLLM`: a LlamaIndex function-calling LLM over an InferenceGuard engine."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.types import BaseOutputParser, PydanticProgramMode

from llamaindex_inferenceguard._messages import to_engine_messages, tool_names, tool_schemas
from llamaindex_inferenceguard._responses import (
    FALLBACK_KEY,
    ChatStreamBuilder,
    CompletionStreamBuilder,
    chat_response,
    completion_response,
)
from llamaindex_inferenceguard._settings import config_settings, normalize_settings
from shared_core.config import GuardConfig

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

    from shared_core.engine import InferenceGuard

logger = logging.getLogger(__name__)

_default_guard: InferenceGuard | None = None
_default_guard_lock = threading.Lock()


def _shared_default_guard() -> InferenceGuard:
    """Load the embedded default engine once per process and share it between instances."""
    global _default_guard
    with _default_guard_lock:
        if _default_guard is None:
            from shared_core.defaults import load_default_guard

            logger.info("Loading the default InferenceGuard engine (embedded models).")
            _default_guard = load_default_guard()
    return _default_guard


@dataclass
class _Request:
    """One call's engine inputs: messages, tool schemas and GuardConfig overrides."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    overrides: dict[str, Any]


class InferenceGuardLLM(FunctionCallingLLM):
    """LlamaIndex LLM that answers through an InferenceGuard safe-decoding engine.

    Every answer is certified with respect to the engine's cost model at its safety budget, or
    is the engine's fallback (by default a refusal with `finish_reason="content_filter"`,
    marked in `additional_kwargs["inferenceguard_fallback"]`). The adapter holds no decoding
    logic: it converts LlamaIndex messages and tools for the engine and wraps its results.

    The constructor is cheap: without `guard`, the embedded default engine loads on first use
    and is shared by every instance in the process.

    Example:
        ```python
        from llama_index.core import Settings
        from llamaindex_inferenceguard import InferenceGuardLLM

        Settings.llm = InferenceGuardLLM.from_defaults(max_new_tokens=96, seed=0)
        response = Settings.llm.complete("Give me three tips for a job interview.")
        print(response.text, response.additional_kwargs["certified"])
        ```

    Args:
        guard: The engine to use. `None` loads `shared_core.defaults.load_default_guard()` on
            first use.
        config: Settings for every call; they replace the engine's own config.
        guard_settings: GuardConfig settings for every call, as a dict (the serialised form).
        system_prompt: System prompt that LlamaIndex prepends in `predict` and that `complete`
            sends as a system message.
        callback_manager: LlamaIndex callback manager.
        pydantic_program_mode: How `structured_predict` builds its program. The default uses
            function calling.
        output_parser: Parser for LlamaIndex's `predict` output.
        **settings: GuardConfig settings for every call (for example `max_new_tokens`,
            `temperature`, `seed`, `stop`, `budget`, `fallback`); `max_tokens` and `timeout`
            are accepted as aliases of `max_new_tokens` and `time_limit_s`.

    Raises:
        TypeError: If a setting name is unknown or `guard` is not an `InferenceGuard`.
        ValueError: If a setting value is invalid (checked at once when `guard` is given,
            otherwise on first use).
    """

    guard_settings: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "GuardConfig settings applied to every call over the engine's own config; "
            "per-call keyword arguments override them."
        ),
    )

    _guard: Any = PrivateAttr(default=None)

    def __init__(
        self,
        guard: InferenceGuard | None = None,
        *,
        config: GuardConfig | None = None,
        guard_settings: Mapping[str, Any] | None = None,
        system_prompt: str | None = None,
        callback_manager: CallbackManager | None = None,
        pydantic_program_mode: PydanticProgramMode = PydanticProgramMode.DEFAULT,
        output_parser: BaseOutputParser | None = None,
        **settings: Any,
    ) -> None:
        if config is not None and not isinstance(config, GuardConfig):
            msg = f"Invalid config={config!r}: expected a shared_core.GuardConfig or None."
            raise TypeError(msg)
        merged = config_settings(config) if config is not None else {}
        merged.update(normalize_settings(guard_settings or {}, where="__init__"))
        merged.update(normalize_settings(settings, where="__init__"))

        super().__init__(
            guard_settings=merged,
            system_prompt=system_prompt,
            callback_manager=callback_manager or CallbackManager([]),
            pydantic_program_mode=pydantic_program_mode,
            output_parser=output_parser,
        )
        if guard is not None:
            from shared_core.engine import InferenceGuard

            if not isinstance(guard, InferenceGuard):
                msg = (
                    f"Invalid guard={guard!r}: expected a shared_core.engine.InferenceGuard, "
                    "or None for the embedded default engine."
                )
                raise TypeError(msg)
            guard.resolve_config(**merged)
        self._guard = guard

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def class_name(cls) -> str:
        """Return the stable name that LlamaIndex serialisation uses for this class."""
        return "InferenceGuardLLM"

    @classmethod
    def from_defaults(cls, **kwargs: Any) -> InferenceGuardLLM:
        """Load the embedded default engine now and return an LLM over it.

        The engine is shared with every other instance that uses the default. `kwargs` are the
        constructor's keyword arguments, for example `max_new_tokens=96` or
        `config=GuardConfig.preset("fast")`.
        """
        return cls(guard=_shared_default_guard(), **kwargs)

    @classmethod
    def from_model_id(
        cls,
        model_id: str,
        *,
        cost_model: Any,
        reward_model: Any = None,
        critic: Any = None,
        device: str | None = None,
        torch_dtype: Any = None,
        model_kwargs: Mapping[str, Any] | None = None,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> InferenceGuardLLM:
        """Load a Hugging Face causal LM and its tokenizer, and return an LLM guarding it.

        Args:
            model_id: A Hub id or a local folder, as for `AutoModelForCausalLM.from_pretrained`.
            cost_model: The cost model that certifies answers (a `shared_core.CostModel`).
            reward_model: Optional reward model that ranks safe candidates.
            critic: Optional latent critic trained for this base model.
            device: Device to move the model to, for example `"cuda"`; `None` keeps the CPU.
            torch_dtype: Torch dtype of the weights, for example `torch.bfloat16`; `None` keeps
                the transformers default. It is passed as transformers' `dtype` argument.
            model_kwargs: Extra arguments of `AutoModelForCausalLM.from_pretrained`.
            tokenizer_kwargs: Extra arguments of `AutoTokenizer.from_pretrained`.
            **kwargs: The constructor's keyword arguments (settings, `system_prompt`, ...).
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from shared_core.engine import InferenceGuard

        model_options = dict(model_kwargs or {})
        if torch_dtype is not None:
            model_options["dtype"] = torch_dtype
        tokenizer = AutoTokenizer.from_pretrained(model_id, **(tokenizer_kwargs or {}))
        model = AutoModelForCausalLM.from_pretrained(model_id, **model_options)
        if device is not None:
            model = model.to(device)  # type: ignore[arg-type]
        guard = InferenceGuard(
            model.eval(), tokenizer, cost_model, reward_model, critic, model_name=model_id
        )
        return cls(guard=guard, **kwargs)

    # --- engine and metadata ----------------------------------------------------------------

    @property
    def guard(self) -> InferenceGuard:
        """The engine behind this LLM; the embedded default loads on first access."""
        if self._guard is None:
            self._guard = _shared_default_guard()
        return self._guard

    async def _aget_guard(self) -> InferenceGuard:
        if self._guard is None:
            # Loading the default engine takes seconds, so keep it off the event loop.
            return await asyncio.to_thread(lambda: self.guard)
        return self._guard

    @property
    def metadata(self) -> LLMMetadata:
        """LLM metadata: the model's context window, the answer length and capabilities."""
        guard = self.guard
        config = guard.resolve_config(**self.guard_settings)
        return LLMMetadata(
            context_window=guard.context_window,
            num_output=config.max_new_tokens,
            is_chat_model=True,
            is_function_calling_model=True,
            model_name=guard.model_name,
        )

    def _chat_request(
        self,
        guard: InferenceGuard,
        messages: Sequence[ChatMessage],
        kwargs: dict[str, Any],
        where: str,
    ) -> _Request:
        kwargs = dict(kwargs)
        tools = kwargs.pop("tools", None)
        overrides = {**self.guard_settings, **normalize_settings(kwargs, where=where)}
        guard.resolve_config(**overrides)
        schemas = tool_schemas(tools) if tools else None
        return _Request(to_engine_messages(messages), schemas, overrides)

    def _completion_request(
        self, guard: InferenceGuard, prompt: str, kwargs: dict[str, Any], where: str
    ) -> _Request:
        if not isinstance(prompt, str):
            msg = f"Invalid prompt={prompt!r}: InferenceGuardLLM.{where} expects a string."
            raise TypeError(msg)
        overrides = {**self.guard_settings, **normalize_settings(kwargs, where=where)}
        guard.resolve_config(**overrides)
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": prompt})
        return _Request(messages, None, overrides)

    # --- chat -------------------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Generate the assistant's reply to `messages` through the guard.

        `kwargs` are per-call settings (as in the constructor) and `tools`, a list of
        LlamaIndex tools or JSON schemas whose calls come back as `ToolCallBlock`s.
        """
        guard = self.guard
        request = self._chat_request(guard, messages, kwargs, "chat")
        result = guard.generate(request.messages, tools=request.tools, **request.overrides)
        return chat_response(
            result, model_name=guard.model_name, parse_tools=request.tools is not None
        )

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream the reply: `delta` is the new committed text, `message.content` all so far."""
        guard = self.guard
        request = self._chat_request(guard, messages, kwargs, "stream_chat")
        builder = ChatStreamBuilder(
            model_name=guard.model_name, parse_tools=request.tools is not None
        )

        def generate() -> ChatResponseGen:
            for chunk in guard.stream(request.messages, tools=request.tools, **request.overrides):
                response = builder.add(chunk)
                if response is not None:
                    yield response

        return generate()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Generate the reply without blocking the event loop. Arguments are as in `chat`."""
        guard = await self._aget_guard()
        request = self._chat_request(guard, messages, kwargs, "achat")
        result = await guard.agenerate(request.messages, tools=request.tools, **request.overrides)
        return chat_response(
            result, model_name=guard.model_name, parse_tools=request.tools is not None
        )

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Stream the reply without blocking the event loop, as `stream_chat` does."""
        guard = await self._aget_guard()
        request = self._chat_request(guard, messages, kwargs, "astream_chat")
        builder = ChatStreamBuilder(
            model_name=guard.model_name, parse_tools=request.tools is not None
        )

        async def generate() -> ChatResponseAsyncGen:
            async for chunk in guard.astream(
                request.messages, tools=request.tools, **request.overrides
            ):
                response = builder.add(chunk)
                if response is not None:
                    yield response

        return generate()

    # --- completion -------------------------------------------------------------------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Generate the reply to `prompt`, sent as one user message after `system_prompt` if set.

        The chat template is always applied, so `formatted` changes nothing: a prompt that was
        already templated as a string would be templated twice.
        """
        guard = self.guard
        request = self._completion_request(guard, prompt, kwargs, "complete")
        result = guard.generate(request.messages, **request.overrides)
        return completion_response(result, model_name=guard.model_name)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Stream the reply to `prompt`: `delta` is the new text, `text` all so far."""
        guard = self.guard
        request = self._completion_request(guard, prompt, kwargs, "stream_complete")
        builder = CompletionStreamBuilder(model_name=guard.model_name)

        def generate() -> CompletionResponseGen:
            for chunk in guard.stream(request.messages, **request.overrides):
                response = builder.add(chunk)
                if response is not None:
                    yield response

        return generate()

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Generate the reply to `prompt` without blocking the event loop, as `complete` does."""
        guard = await self._aget_guard()
        request = self._completion_request(guard, prompt, kwargs, "acomplete")
        result = await guard.agenerate(request.messages, **request.overrides)
        return completion_response(result, model_name=guard.model_name)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Stream the reply to `prompt` without blocking the event loop, like `stream_complete`."""
        guard = await self._aget_guard()
        request = self._completion_request(guard, prompt, kwargs, "astream_complete")
        builder = CompletionStreamBuilder(model_name=guard.model_name)

        async def generate() -> CompletionResponseAsyncGen:
            async for chunk in guard.astream(request.messages, **request.overrides):
                response = builder.add(chunk)
                if response is not None:
                    yield response

        return generate()

    # --- function calling -------------------------------------------------------------------

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        tool_choice: str | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Return `chat` arguments that offer `tools` to the model.

        `tool_choice` may be `"auto"`, `"none"` (the tools are not offered), `"required"`, a
        tool name, or an OpenAI-style `{"type": "function", "function": {"name": ...}}`.

        Raises:
            ValueError: If `tool_choice` names a tool that is not in `tools`.
        """
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)

        schemas = tool_schemas(tools)
        names = tool_names(schemas)
        choice = _tool_choice_name(tool_choice)
        if choice == "none":
            return {"messages": messages, **kwargs}

        # NOTE: a required tool call is a prompt instruction, not a decoding constraint, because
        # the engine samples freely. A reply without a tool call is still possible.
        instruction = None
        if choice not in (None, "auto", "required"):
            if choice not in names:
                msg = f"Invalid tool_choice={tool_choice!r}: no tool of that name in {names}."
                raise ValueError(msg)
            instruction = f"Answer only with a call of the tool {choice!r}."
        elif tool_required or choice == "required":
            instruction = "Answer only with a tool call."
        if instruction is not None:
            messages = _with_system_instruction(messages, instruction)
        return {"messages": messages, "tools": schemas, **kwargs}

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Keep only the first tool call unless parallel tool calls are allowed."""
        if allow_parallel_tool_calls:
            return response
        calls = [block for block in response.message.blocks if isinstance(block, ToolCallBlock)]
        if len(calls) > 1:
            logger.info("Dropping %d extra tool call(s): parallel calls are off.", len(calls) - 1)
            response.message.blocks = [
                block
                for block in response.message.blocks
                if not isinstance(block, ToolCallBlock) or block is calls[0]
            ]
        return response

    def get_tool_calls_from_response(
        self,
        response: ChatResponse,
        error_on_no_tool_call: bool = True,
        **kwargs: Any,
    ) -> list[ToolSelection]:
        """Return the tool calls in a response's `ToolCallBlock`s.

        Raises:
            ValueError: If the response has no tool call and `error_on_no_tool_call` is set.
        """
        calls = [block for block in response.message.blocks if isinstance(block, ToolCallBlock)]
        if not calls:
            if error_on_no_tool_call:
                fallback = response.additional_kwargs.get(FALLBACK_KEY)
                reason = (
                    f" The guard returned its {fallback!r} fallback answer instead."
                    if fallback
                    else ""
                )
                msg = (
                    "Expected at least one tool call, but the response has none."
                    f"{reason} Output: {response.message.content!r}"
                )
                raise ValueError(msg)
            return []
        return [
            ToolSelection(
                tool_id=call.tool_call_id or "",
                tool_name=call.tool_name,
                tool_kwargs=_tool_arguments(call.tool_kwargs),
            )
            for call in calls
        ]


def _tool_choice_name(tool_choice: str | Mapping[str, Any] | None) -> str | None:
    if tool_choice is None or isinstance(tool_choice, str):
        return tool_choice
    function = tool_choice.get("function", tool_choice)
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        msg = (
            f"Invalid tool_choice={tool_choice!r}: expected 'auto', 'none', 'required', a tool "
            "name, or {'type': 'function', 'function': {'name': ...}}."
        )
        raise ValueError(msg)
    return function["name"]


def _with_system_instruction(messages: list[ChatMessage], instruction: str) -> list[ChatMessage]:
    """Append `instruction` to the leading system message, or insert one."""
    if messages and messages[0].role == MessageRole.SYSTEM:
        first = messages[0]
        merged = ChatMessage(
            role=MessageRole.SYSTEM,
            blocks=[*first.blocks, TextBlock(text=instruction)],
            additional_kwargs=dict(first.additional_kwargs),
        )
        return [merged, *messages[1:]]
    return [ChatMessage(role=MessageRole.SYSTEM, content=instruction), *messages]


def _tool_arguments(arguments: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        logger.warning("Invalid JSON in tool call arguments %r; passing {} instead.", arguments)
        return {}
    return parsed if isinstance(parsed, dict) else {}
