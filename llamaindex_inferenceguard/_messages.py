"""Conversion between LlamaIndex chat types and the engine's message, tool and call formats."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    CachePoint,
    ChatMessage,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)

from shared_core.tools import TOOL_CALL_OPEN, TOOL_CALL_PATTERN, parse_tool_calls

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

logger = logging.getLogger(__name__)

# LlamaIndex roles mapped onto the four roles that the engine and chat templates accept.
_ENGINE_ROLES: dict[MessageRole, str] = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
}


def to_engine_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Convert LlamaIndex chat messages to the engine's message dicts.

    Text blocks are joined with newlines, as `ChatMessage.content` joins them. Tool calls come
    from `ToolCallBlock`s, or from OpenAI-style `additional_kwargs["tool_calls"]` when the
    message has no such block. Thinking blocks and cache points are dropped because chat
    templates do not render them.

    Raises:
        ValueError: If the list is empty or a message holds a non-text block (image, audio,
            video, document or citation).
    """
    if not messages:
        msg = "InferenceGuardLLM got an empty message list; pass at least one ChatMessage."
        raise ValueError(msg)

    converted = []
    for index, message in enumerate(messages):
        texts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for block in message.blocks:
            if isinstance(block, TextBlock):
                texts.append(block.text)
            elif isinstance(block, ToolCallBlock):
                tool_calls.append(
                    _tool_call_dict(block.tool_call_id, block.tool_name, block.tool_kwargs)
                )
            elif isinstance(block, ThinkingBlock | CachePoint):
                continue
            else:
                msg = (
                    f"InferenceGuardLLM accepts text only, but message {index} "
                    f"({message.role.value}) has a {block.block_type!r} block. "
                    "Convert it to text before calling the model."
                )
                raise ValueError(msg)
        if not tool_calls:
            tool_calls = _legacy_tool_calls(message.additional_kwargs.get("tool_calls"))

        entry: dict[str, Any] = {"role": _ENGINE_ROLES[message.role], "content": "\n".join(texts)}
        if tool_calls and entry["role"] == "assistant":
            entry["tool_calls"] = tool_calls
        converted.append(entry)
    return converted


def _tool_call_dict(call_id: str | None, name: str, arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            logger.warning("Keeping tool call %r arguments as a string: invalid JSON.", name)
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id:
        call["id"] = call_id
    return call


def _legacy_tool_calls(calls: Any) -> list[dict[str, Any]]:
    """Read OpenAI-style tool calls (dicts or objects with `.function`) from `additional_kwargs`."""
    if not calls:
        return []
    converted = []
    for call in calls:
        if isinstance(call, Mapping):
            function = call.get("function", {})
            converted.append(
                _tool_call_dict(
                    call.get("id"), function.get("name", ""), function.get("arguments", {})
                )
            )
        else:
            function = call.function
            converted.append(
                _tool_call_dict(getattr(call, "id", None), function.name, function.arguments)
            )
    return converted


def tool_schemas(tools: Sequence[BaseTool | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return OpenAI-style JSON schemas for LlamaIndex tools; schemas in dict form pass as is.

    Raises:
        TypeError: If an item is neither a LlamaIndex tool nor a dict.
    """
    schemas = []
    for tool in tools:
        if isinstance(tool, Mapping):
            schemas.append(dict(tool))
        elif hasattr(tool, "metadata") and hasattr(tool.metadata, "to_openai_tool"):
            schemas.append(tool.metadata.to_openai_tool(skip_length_check=True))
        else:
            msg = (
                f"Invalid tool {tool!r}: expected a LlamaIndex BaseTool (for example "
                "FunctionTool.from_defaults(fn)) or an OpenAI-style JSON schema dict."
            )
            raise TypeError(msg)
    return schemas


def tool_names(schemas: Sequence[Mapping[str, Any]]) -> list[str]:
    """Return the function names declared by OpenAI-style tool schemas."""
    return [schema.get("function", schema).get("name", "") for schema in schemas]


def visible_tool_text(text: str, *, final: bool = True) -> str:
    """Return the content of model output that may contain `<tool_call>` sections.

    Complete and unclosed calls are removed and the result is stripped. Unless `final`, a
    trailing partial `<tool_call>` tag is held back as well, because more output may complete
    it. For any prefix `p` of a text `t`, `visible_tool_text(p, final=False)` is a prefix of
    `visible_tool_text(t)`, so streamed deltas add up to the final content.
    """
    if not final:
        for length in range(min(len(TOOL_CALL_OPEN) - 1, len(text)), 0, -1):
            if TOOL_CALL_OPEN.startswith(text[-length:]):
                text = text[:-length]
                break
    return TOOL_CALL_PATTERN.sub("", text).strip()


class ToolTextStream:
    """Turns streamed model output into content deltas that leave out `<tool_call>` sections."""

    def __init__(self) -> None:
        self.text = ""
        self.content = ""

    def feed(self, piece: str, *, final: bool = False) -> str:
        """Append a piece of output and return the content delta it makes visible.

        Pass `final=True` with the last piece, so that held-back text is released.
        """
        self.text += piece
        content = visible_tool_text(self.text, final=final)
        if not content.startswith(self.content):
            # Unreachable while `visible_tool_text` keeps its prefix property; hold text back
            # instead of emitting a delta that would not add up.
            logger.warning("Streamed tool-call content is not monotone; holding it back.")
            return ""
        delta = content[len(self.content) :]
        self.content = content
        return delta


def tool_call_blocks(text: str) -> tuple[list[ToolCallBlock], list[str]]:
    """Parse `<tool_call>` sections of model output into blocks, plus unparsable call texts."""
    parsed = parse_tool_calls(text)
    blocks = [
        ToolCallBlock(tool_call_id=call.id, tool_name=call.name, tool_kwargs=call.arguments)
        for call in parsed.tool_calls
    ]
    if parsed.invalid_calls:
        logger.warning("Dropped %d tool call(s) with invalid JSON.", len(parsed.invalid_calls))
    return blocks, parsed.invalid_calls
