"""Tool binding and tool-call parsing for `ChatInferenceGuard`.

The model writes calls as JSON inside `<tool_call>...</tool_call>` tags (see
`shared_core.tools`). These helpers choose which tool schemas reach the prompt, turn the tagged
output into LangChain tool calls, and hold back streamed text that may open a tag.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import InvalidToolCall, ToolCall, ToolCallChunk
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk

from shared_core.tools import TOOL_CALL_OPEN, parse_tool_calls
from shared_core.tools import ToolCall as ParsedToolCall

ToolSchema = dict[str, Any]

_ANY_TOOL_CHOICES = frozenset({"any", "required"})
_NO_TOOL_CHOICES = frozenset({"none"})
_AUTO_TOOL_CHOICES = frozenset({"auto"})


@dataclass(frozen=True)
class ToolRequest:
    """The tools of one request and the instruction that enforces `tool_choice` in the prompt."""

    tools: list[ToolSchema] | None
    """Tool schemas in the OpenAI format, or `None` when the prompt lists no tools."""

    instruction: str | None
    """A system instruction asking for a tool call, or `None`."""

    @property
    def parse_calls(self) -> bool:
        """Whether the output is parsed for `<tool_call>` blocks."""
        return bool(self.tools)


def resolve_tool_request(tools: Sequence[ToolSchema] | None, tool_choice: Any) -> ToolRequest:
    """Select the tools for the prompt and an instruction for `tool_choice`.

    Args:
        tools: Tool schemas in the OpenAI format, as `bind_tools` stores them.
        tool_choice: `None` or `"auto"` (the model decides), `"none"` (no tools in the prompt),
            `"any"`, `"required"` or `True` (the model is asked to call one of the tools), a
            tool name or `{"type": "function", "function": {"name": ...}}` (the prompt lists only
            that tool and asks the model to call it).

    Returns:
        The tools and instruction for the engine request.

    Raises:
        ValueError: If `tool_choice` is given without tools, has an unsupported form, or names
            a tool that is not bound.
    """
    if not tools:
        if not (tool_choice is None or tool_choice is False or tool_choice in ("auto", "none")):
            msg = f"tool_choice={tool_choice!r} needs tools: pass them with bind_tools(tools)."
            raise ValueError(msg)
        return ToolRequest(tools=None, instruction=None)

    schemas = [dict(schema) for schema in tools]
    names = [schema["function"]["name"] for schema in schemas]

    choice_text = tool_choice if isinstance(tool_choice, str) else None
    if tool_choice is None or tool_choice is False or choice_text in _AUTO_TOOL_CHOICES:
        return ToolRequest(tools=schemas, instruction=None)
    if choice_text in _NO_TOOL_CHOICES:
        return ToolRequest(tools=None, instruction=None)
    if tool_choice is True or choice_text in _ANY_TOOL_CHOICES:
        # NOTE: this is a prompt instruction only; the engine does not constrain decoding, so
        # a small model may still answer without a call.
        instruction = (
            "You must answer with a <tool_call> that calls one of the functions: "
            + ", ".join(names)
            + "."
        )
        return ToolRequest(tools=schemas, instruction=instruction)

    name = _tool_choice_name(tool_choice)
    if name not in names:
        msg = f"tool_choice names the tool {name!r}, which is not bound. Bound tools: {names}."
        raise ValueError(msg)
    chosen = [schema for schema in schemas if schema["function"]["name"] == name]
    instruction = f"You must answer with a <tool_call> that calls the function {name}."
    return ToolRequest(tools=chosen, instruction=instruction)


def _tool_choice_name(tool_choice: Any) -> str:
    if isinstance(tool_choice, str):
        return tool_choice
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"])
        if isinstance(tool_choice.get("name"), str):
            return str(tool_choice["name"])
    msg = (
        f"Unsupported tool_choice={tool_choice!r}. Use None, 'auto', 'none', 'any', "
        "'required', a tool name, or {'type': 'function', 'function': {'name': ...}}."
    )
    raise ValueError(msg)


@dataclass
class ToolOutput:
    """Model output split into message content and LangChain tool calls."""

    content: str
    tool_calls: list[ToolCall]
    invalid_tool_calls: list[InvalidToolCall]

    def tool_call_chunks(self) -> list[ToolCallChunk]:
        """Return the calls as stream chunks, valid calls first, each with its own index.

        An invalid call's raw text is sent JSON-encoded as a string. LangChain re-parses chunk
        arguments with a partial-JSON parser when it merges chunks, and that parser would turn
        a truncated call into a valid-looking one. A JSON string stays an invalid call.
        """
        chunks = [
            tool_call_chunk(
                name=call["name"],
                args=json.dumps(call["args"], ensure_ascii=False),
                id=call["id"],
                index=index,
            )
            for index, call in enumerate(self.tool_calls)
        ]
        offset = len(chunks)
        chunks += [
            tool_call_chunk(
                name=call["name"],
                args=json.dumps(call["args"], ensure_ascii=False),
                id=call["id"],
                index=offset + i,
            )
            for i, call in enumerate(self.invalid_tool_calls)
        ]
        return chunks


def split_tool_output(text: str, *, parse_calls: bool = True) -> ToolOutput:
    """Parse `<tool_call>` blocks out of model output.

    The content is the text outside the blocks with surrounding whitespace removed, whether or
    not a block was found, so that streamed content (see `ToolTextFilter`) is always a prefix
    of it.

    Args:
        text: The generated text.
        parse_calls: `False` keeps the whole text as content and returns no calls. Fallback
            responses use it, because their text can end in the certified prefix of an
            unfinished call followed by the refusal, and no tool may run on a fallback response.
    """
    if not parse_calls:
        return ToolOutput(content=text.strip(), tool_calls=[], invalid_tool_calls=[])
    parsed = parse_tool_calls(text)
    return ToolOutput(
        content=parsed.content.strip(),
        tool_calls=[_to_langchain_call(call) for call in parsed.tool_calls],
        invalid_tool_calls=[
            invalid_tool_call(
                name=None,
                args=raw,
                id=f"call_{uuid.uuid4().hex[:24]}",
                error="The <tool_call> block is not a JSON object with a string 'name' and "
                "an object 'arguments'.",
            )
            for raw in parsed.invalid_calls
        ],
    )


def _to_langchain_call(call: ParsedToolCall) -> ToolCall:
    return tool_call(name=call.name, args=call.arguments, id=call.id)


class ToolTextFilter:
    """Releases streamed text that cannot belong to a `<tool_call>` block.

    Text before the first tag is released as it arrives, without leading whitespace, minus
    trailing whitespace and any tail that could start a tag. Everything from the first tag on
    is held until the end, when `finish` returns the rest of the parsed content and the calls.
    """

    def __init__(self) -> None:
        self._text = ""
        self._released = ""

    def push(self, text: str) -> str:
        """Add streamed text and return the newly releasable content (possibly empty)."""
        self._text += text
        visible = self._visible_prefix()
        new = visible[len(self._released) :]
        self._released = visible
        return new

    def finish(self, *, parse_calls: bool = True) -> tuple[str, ToolOutput]:
        """Return the content not yet released and the parsed output of the whole text.

        Args:
            parse_calls: As in `split_tool_output`.

        Raises:
            RuntimeError: If released content is not a prefix of the parsed content, which
                would mean the two definitions of content have drifted apart.
        """
        output = split_tool_output(self._text, parse_calls=parse_calls)
        if not output.content.startswith(self._released):
            msg = (
                "Streamed tool-call content is not a prefix of the parsed content: "
                f"released {self._released!r}, parsed {output.content!r}."
            )
            raise RuntimeError(msg)
        return output.content[len(self._released) :], output

    def _visible_prefix(self) -> str:
        head = self._text
        index = head.find(TOOL_CALL_OPEN)
        if index >= 0:
            head = head[:index]
        else:
            for length in range(min(len(TOOL_CALL_OPEN) - 1, len(head)), 0, -1):
                if TOOL_CALL_OPEN.startswith(head[-length:]):
                    head = head[:-length]
                    break
        return head.strip()
