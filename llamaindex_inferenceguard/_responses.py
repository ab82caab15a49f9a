"""LlamaIndex responses built from engine results and stream chunks."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    MessageRole,
    TextBlock,
)

from llamaindex_inferenceguard._messages import ToolTextStream, tool_call_blocks, visible_tool_text
from shared_core.result import GuaranteeReport, GuardChunk, GuardResult, Usage

FALLBACK_KEY = "inferenceguard_fallback"
"""Key in `additional_kwargs` that contains the fallback policy of a fallback answer."""


def raw_payload(
    model_name: str,
    text: str,
    finish_reason: str | None,
    usage: Usage | None,
    report: GuaranteeReport | None,
) -> dict[str, Any]:
    """Return the JSON `raw` field: model, full output text, finish reason, usage and report.

    `usage` uses the OpenAI key names that LlamaIndex's `TokenCountingHandler` reads.
    """
    return {
        "model": model_name,
        "text": text,
        "finish_reason": finish_reason,
        "usage": (usage or Usage()).to_dict(),
        "report": report.to_dict() if report is not None else None,
    }


def response_kwargs(finish_reason: str | None, report: GuaranteeReport | None) -> dict[str, Any]:
    """Return the `additional_kwargs` of a final response: finish reason, certified, fallback."""
    extra: dict[str, Any] = {"finish_reason": finish_reason}
    if report is not None:
        extra["certified"] = report.certified
        if report.fallback is not None:
            extra[FALLBACK_KEY] = report.fallback
    return extra


def assistant_message(text: str, *, parse_tools: bool) -> tuple[ChatMessage, list[str]]:
    """Build the assistant message for model output, plus any unparsable tool-call texts.

    With `parse_tools`, `<tool_call>` sections become `ToolCallBlock`s and leave the text.
    """
    if not parse_tools:
        return ChatMessage(role=MessageRole.ASSISTANT, blocks=[TextBlock(text=text)]), []
    blocks, invalid = tool_call_blocks(text)
    content = visible_tool_text(text)
    message = ChatMessage(role=MessageRole.ASSISTANT, blocks=[TextBlock(text=content), *blocks])
    return message, invalid


def chat_response(result: GuardResult, *, model_name: str, parse_tools: bool) -> ChatResponse:
    """Convert a finished engine result into a `ChatResponse`."""
    message, invalid = assistant_message(result.text, parse_tools=parse_tools)
    extra = response_kwargs(result.finish_reason, result.report)
    if invalid:
        extra["invalid_tool_calls"] = invalid
    return ChatResponse(
        message=message,
        raw=raw_payload(model_name, result.text, result.finish_reason, result.usage, result.report),
        additional_kwargs=extra,
    )


def completion_response(result: GuardResult, *, model_name: str) -> CompletionResponse:
    """Convert a finished engine result into a `CompletionResponse`."""
    return CompletionResponse(
        text=result.text,
        raw=raw_payload(model_name, result.text, result.finish_reason, result.usage, result.report),
        additional_kwargs=response_kwargs(result.finish_reason, result.report),
    )


class ChatStreamBuilder:
    """Builds streamed `ChatResponse`s from engine chunks.

    Each response carries the new text in `delta` and the content so far in `message`. With
    `parse_tools`, `<tool_call>` sections are held back from the content and become
    `ToolCallBlock`s on the last response.
    """

    def __init__(self, *, model_name: str, parse_tools: bool) -> None:
        self.model_name = model_name
        self.parse_tools = parse_tools
        self.text = ""
        self.content = ""
        self._tool_text = ToolTextStream()

    def add(self, chunk: GuardChunk) -> ChatResponse | None:
        """Return the response for `chunk`, or `None` if it is not last and adds no content."""
        self.text += chunk.text
        delta = (
            self._tool_text.feed(chunk.text, final=chunk.is_last)
            if self.parse_tools
            else chunk.text
        )
        self.content += delta
        if not chunk.is_last:
            if not delta:
                return None
            message = ChatMessage(role=MessageRole.ASSISTANT, blocks=[TextBlock(text=self.content)])
            return ChatResponse(message=message, delta=delta)

        message, invalid = assistant_message(self.text, parse_tools=self.parse_tools)
        extra = response_kwargs(chunk.finish_reason, chunk.report)
        if invalid:
            extra["invalid_tool_calls"] = invalid
        return ChatResponse(
            message=message,
            delta=delta,
            raw=raw_payload(
                self.model_name, self.text, chunk.finish_reason, chunk.usage, chunk.report
            ),
            additional_kwargs=extra,
        )


class CompletionStreamBuilder:
    """Builds streamed `CompletionResponse`s: `delta` is the new text, `text` the text so far."""

    def __init__(self, *, model_name: str) -> None:
        self.model_name = model_name
        self.text = ""

    def add(self, chunk: GuardChunk) -> CompletionResponse | None:
        """Return the response for `chunk`, or `None` when it is empty and not last."""
        self.text += chunk.text
        if not chunk.is_last:
            if not chunk.text:
                return None
            return CompletionResponse(text=self.text, delta=chunk.text)
        return CompletionResponse(
            text=self.text,
            delta=chunk.text,
            raw=raw_payload(
                self.model_name, self.text, chunk.finish_reason, chunk.usage, chunk.report
            ),
            additional_kwargs=response_kwargs(chunk.finish_reason, chunk.report),
        )
