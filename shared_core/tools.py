"""Tool calling in text: the prompt format for templates without tool support, and the parser.

Models trained for tools (Qwen 2.5, Hermes, SmolLM3, ...) write calls as JSON inside
`<tool_call>...</tool_call>` tags, and their chat templates render the tool schemas from
`apply_chat_template(..., tools=...)`. For a template that ignores `tools` (SmolLM2's, for
example), `prepare_messages` renders the schemas into the system message and earlier calls
into assistant text, in the same tag format, so the parser below reads both kinds of model.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TOOL_CALL_PATTERN = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
TOOL_CALL_OPEN = "<tool_call>"

Message = dict[str, Any]


@dataclass
class ToolCall:
    """One parsed tool call."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def to_dict(self) -> dict[str, Any]:
        """Return the call in the OpenAI / Hugging Face chat format."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class ParsedOutput:
    """Model output split into plain content, parsed tool calls and unparsable call texts."""

    content: str
    tool_calls: list[ToolCall]
    invalid_calls: list[str]


def template_supports_tools(chat_template: str | None) -> bool:
    """Return whether a chat template renders the `tools` variable."""
    return bool(chat_template) and "tools" in str(chat_template)


def tool_system_prompt(tools: Sequence[Mapping[str, Any]]) -> str:
    """Return a system prompt that lists `tools` and the `<tool_call>` answer format."""
    schemas = "\n".join(json.dumps(dict(tool), ensure_ascii=False) for tool in tools)
    return (
        "You can call functions. Their JSON schemas are listed between <tools></tools>:\n"
        f"<tools>\n{schemas}\n</tools>\n"
        "To call a function, answer with one JSON object per call, each inside tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <arguments-object>}\n</tool_call>'
    )


def render_tool_calls(tool_calls: Sequence[Mapping[str, Any]]) -> str:
    """Render calls in the chat format as `<tool_call>` text."""
    parts = []
    for call in tool_calls:
        function = call.get("function", call)
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            with contextlib.suppress(json.JSONDecodeError):
                arguments = json.loads(arguments)
        payload = {"name": function.get("name"), "arguments": arguments}
        parts.append(f"{TOOL_CALL_OPEN}\n{json.dumps(payload, ensure_ascii=False)}\n</tool_call>")
    return "\n".join(parts)


def prepare_messages(
    messages: Sequence[Message],
    tools: Sequence[Mapping[str, Any]] | None,
    chat_template: str | None,
) -> tuple[list[Message], list[dict[str, Any]] | None]:
    """Return messages and tools ready for `apply_chat_template`.

    Templates that render `tools` get the messages and tools unchanged. For other templates,
    the tool schemas join the system message, assistant tool calls become `<tool_call>` text,
    and tool results become user turns wrapped in `<tool_response>` tags, because such
    templates usually know only the system, user and assistant roles.
    """
    if template_supports_tools(chat_template):
        return [dict(m) for m in messages], [dict(t) for t in tools] if tools else None

    prepared: list[Message] = []
    for message in messages:
        message = dict(message)
        role = message.get("role")
        content = message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            calls = render_tool_calls(message.pop("tool_calls"))
            message["content"] = f"{content}\n{calls}".strip()
        elif role == "tool":
            message = {"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"}
        else:
            message["content"] = content
        prepared.append(message)

    if tools:
        prompt = tool_system_prompt(tools)
        if prepared and prepared[0].get("role") == "system":
            prepared[0] = {**prepared[0], "content": f"{prepared[0]['content']}\n\n{prompt}"}
        else:
            prepared.insert(0, {"role": "system", "content": prompt})
    return prepared, None


def parse_tool_calls(text: str) -> ParsedOutput:
    """Split model output into content and `<tool_call>` JSON calls.

    A call whose JSON does not parse, or that has no string `name`, is kept verbatim in
    `invalid_calls` and left out of `tool_calls`. The content is the text outside the tags.

    Example:
        >>> out = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>')
        >>> out.tool_calls[0].name, out.tool_calls[0].arguments, out.content
        ('add', {'a': 1}, '')
    """
    calls: list[ToolCall] = []
    invalid: list[str] = []
    for match in TOOL_CALL_PATTERN.finditer(text):
        raw = match.group(1).strip()
        try:
            payload = json.loads(raw)
        except json.JSONDecodeError:
            invalid.append(raw)
            continue
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            invalid.append(raw)
            continue
        arguments = payload.get("arguments", payload.get("parameters", {}))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                invalid.append(raw)
                continue
        if not isinstance(arguments, dict):
            invalid.append(raw)
            continue
        calls.append(ToolCall(name=payload["name"], arguments=arguments))
    content = TOOL_CALL_PATTERN.sub("", text).strip() if (calls or invalid) else text
    return ParsedOutput(content=content, tool_calls=calls, invalid_calls=invalid)
