"""Conversion of LangChain messages into the engine's chat-message dicts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

# Block types whose text is part of the prompt; every other block (images, audio, files) is
# rejected, because the engine drives a text-only language model.
_TEXT_BLOCK_TYPES = frozenset({"text", "text-plain"})

# Block types that describe a tool call already present in `AIMessage.tool_calls`.
_TOOL_CALL_BLOCK_TYPES = frozenset({"tool_use", "tool_call", "function_call", "tool_call_chunk"})

_CHAT_MESSAGE_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "tool": "tool",
    "function": "tool",
}


def convert_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Convert LangChain messages into the engine's `{"role", "content", ...}` dicts.

    Args:
        messages: The conversation, in order. It may end with any role.

    Returns:
        One dict per message. Assistant messages with tool calls carry `tool_calls` in the
        OpenAI / Hugging Face chat format, with the arguments as a dict.

    Raises:
        TypeError: If a message type is not supported.
        ValueError: If a message contains a non-text content block or an unknown role.
    """
    return [_convert_message(message) for message in messages]


def _convert_message(message: BaseMessage) -> dict[str, Any]:
    content = content_text(message)

    if isinstance(message, SystemMessage):
        return {"role": "system", "content": content}
    if isinstance(message, HumanMessage):
        return {"role": "user", "content": content}
    if isinstance(message, AIMessage):
        return _convert_ai_message(message, content)
    if isinstance(message, ToolMessage):
        return {"role": "tool", "content": content, "tool_call_id": message.tool_call_id}
    if isinstance(message, FunctionMessage):
        return {"role": "tool", "content": content}
    if isinstance(message, ChatMessage):
        role = _CHAT_MESSAGE_ROLES.get(message.role.lower())
        if role is None:
            msg = (
                f"Unsupported ChatMessage role {message.role!r}. "
                f"Use one of {sorted(_CHAT_MESSAGE_ROLES)}."
            )
            raise ValueError(msg)
        return {"role": role, "content": content}

    msg = (
        f"Unsupported message type {type(message).__name__}. Use SystemMessage, "
        "HumanMessage, AIMessage, ToolMessage or ChatMessage."
    )
    raise TypeError(msg)


def _convert_ai_message(message: AIMessage, content: str) -> dict[str, Any]:
    converted: dict[str, Any] = {"role": "assistant", "content": content}
    calls = [
        {
            "id": call.get("id") or "",
            "type": "function",
            "function": {"name": call["name"], "arguments": call["args"]},
        }
        for call in message.tool_calls
    ]
    # An invalid call is replayed with its raw argument text, which is what the model wrote.
    calls += [
        {
            "id": call.get("id") or "",
            "type": "function",
            "function": {"name": call.get("name") or "", "arguments": call.get("args") or ""},
        }
        for call in message.invalid_tool_calls
    ]
    if calls:
        converted["tool_calls"] = calls
    return converted


def content_text(message: BaseMessage) -> str:
    """Return the text of a message's content, joining text blocks in order.

    Tool-call blocks of an AI message are skipped, because the calls are taken from
    `AIMessage.tool_calls`. A JSON block (a dict without a text type, as some tools return)
    becomes its JSON text.

    Raises:
        ValueError: If the content has an image, audio, file or other non-text block.
    """
    content = message.content
    if isinstance(content, str):
        return content

    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
            continue
        block_type = block.get("type")
        if block_type in _TEXT_BLOCK_TYPES:
            parts.append(str(block.get("text", "")))
        elif block_type in _TOOL_CALL_BLOCK_TYPES and isinstance(message, AIMessage):
            continue
        elif block_type == "json" or (block_type is None and isinstance(message, ToolMessage)):
            parts.append(json.dumps(block.get("json", block), ensure_ascii=False))
        else:
            msg = (
                f"Unsupported content block type {block_type!r} in a "
                f"{type(message).__name__}: ChatInferenceGuard drives a text-only model. "
                "Pass text content only."
            )
            raise ValueError(msg)
    return "".join(parts)
