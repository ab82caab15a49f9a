"""Structured output for `ChatInferenceGuard`: tool calls or JSON text, parsed into a schema."""

from __future__ import annotations

import json
from collections.abc import Mapping
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

try:
    from langchain_core.exceptions import ModelRefusalError
except ImportError:  # langchain-core < 1.7.5 has no refusal error
    from langchain_core.exceptions import OutputParserException

    class ModelRefusalError(OutputParserException):  # type: ignore[no-redef]
        """Raised when the model returned a refusal instead of the requested output."""

        def __init__(self, message: str, *, raw_message: BaseMessage | None = None) -> None:
            super().__init__(message)
            self.raw_message = raw_message


if TYPE_CHECKING:
    from langchain_inferenceguard.chat_models import ChatInferenceGuard

StructuredOutputMethod = Literal["function_calling", "json_schema", "json_mode"]
STRUCTURED_OUTPUT_METHODS: tuple[str, ...] = ("function_calling", "json_schema", "json_mode")

REFUSAL_FINISH_REASON = "content_filter"

_JSON_OBJECT_INSTRUCTION = "Answer with a single JSON object and nothing else."
_JSON_SCHEMA_INSTRUCTION = (
    "Answer with a single JSON object that conforms to this JSON schema, and nothing else:\n"
)


def build_structured_output(
    model: ChatInferenceGuard,
    schema: Mapping[str, Any] | type | None,
    *,
    method: str,
    include_raw: bool,
    strict: bool | None,
) -> Runnable[Any, Any]:
    """Return a runnable that calls `model` and parses its response into `schema`.

    Raises:
        ValueError: If `method` is unknown, or `schema` is missing for a method that needs it.
    """
    if method not in STRUCTURED_OUTPUT_METHODS:
        msg = (
            f"Unknown structured output method={method!r}. Use one of {STRUCTURED_OUTPUT_METHODS}."
        )
        raise ValueError(msg)
    if schema is None and method != "json_mode":
        msg = f"with_structured_output(method={method!r}) needs a schema; got None."
        raise ValueError(msg)

    is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
    format_info = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
    parser: Runnable[Any, Any]

    if method == "function_calling":
        assert schema is not None
        tool_name = convert_to_openai_tool(schema)["function"]["name"]
        llm = model.bind_tools(
            [schema],  # type: ignore[list-item]
            tool_choice=tool_name,
            ls_structured_output_format=format_info,
        )
        if is_pydantic:
            parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
        else:
            parser = JsonOutputKeyToolsParser(key_name=tool_name, first_tool_only=True)
    else:
        if method == "json_schema":
            assert schema is not None
            response_format: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {"schema": convert_to_json_schema(schema)},  # type: ignore[arg-type]
            }
        else:
            response_format = {"type": "json_object"}
        llm = model.bind(response_format=response_format, ls_structured_output_format=format_info)
        parser = (
            PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
            if is_pydantic
            else JsonOutputParser()
        )

    checked_parser = RunnableLambda(raise_if_refused, name="raise_if_refused") | parser
    if not include_raw:
        return llm | checked_parser

    parse_raw = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | checked_parser, parsing_error=lambda _: None
    )
    keep_raw = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parse_raw.with_fallbacks(
        [keep_raw], exception_key="parsing_error"
    )


def raise_if_refused(message: BaseMessage) -> BaseMessage:
    """Return `message`, or raise `ModelRefusalError` if it is the guard's fallback response.

    Raises:
        ModelRefusalError: If the message's `finish_reason` is `"content_filter"`.
    """
    if message.response_metadata.get("finish_reason") == REFUSAL_FINISH_REASON:
        report = message.response_metadata.get("inferenceguard") or {}
        msg = (
            "Model refused to produce the requested output: InferenceGuard returned its "
            f"fallback answer (reason: {report.get('fallback_reason')!r}, cost model "
            f"{report.get('cost_model')!r}): {message.text!r}"
        )
        raise ModelRefusalError(msg, raw_message=message)
    return message


def response_format_instruction(response_format: Any) -> str | None:
    """Return the system instruction that requests the JSON output `response_format` describes.

    Accepts `{"type": "json_object"}`, `{"type": "text"}`, and `{"type": "json_schema"}` with
    the schema under `"json_schema": {"schema": ...}` (the OpenAI form) or under `"schema"`.

    Raises:
        ValueError: If `response_format` has another form.
    """
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return _JSON_OBJECT_INSTRUCTION
    if kind == "json_schema":
        assert isinstance(response_format, Mapping)
        container = response_format.get("json_schema", response_format)
        schema = container.get("schema") if isinstance(container, Mapping) else None
        if isinstance(schema, Mapping):
            return _JSON_SCHEMA_INSTRUCTION + json.dumps(schema, ensure_ascii=False)
    msg = (
        f"Unsupported response_format={response_format!r}. Use {{'type': 'json_object'}}, "
        "{'type': 'text'} or {'type': 'json_schema', 'json_schema': {'schema': {...}}}."
    )
    raise ValueError(msg)
