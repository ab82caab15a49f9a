"""Tool calling, structured output and agents through ChatInferenceGuard on forced tiny models."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_support import (
    PromptRecorder,
    banned_word_cost_model,
    forced_guard,
    scripted_guard,
)
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from langchain_inferenceguard import ChatInferenceGuard, ModelRefusalError


@tool
def get_weather(city: str) -> str:
    """Return the current weather in a city."""
    return f"It is sunny in {city}."


@tool
def get_time(zone: str) -> str:
    """Return the current time in a time zone."""
    return "noon"


class Joke(BaseModel):
    """A joke with its setup and punchline."""

    setup: str = Field(description="question to set up a joke")
    punchline: str = Field(description="answer to resolve the joke")


class JokeDict(TypedDict):
    """A joke with its setup and punchline."""

    setup: str
    punchline: str


WEATHER_CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
JOKE_CALL = (
    '<tool_call>{"name": "Joke", "arguments": {"setup": "Why?", "punchline": "Because."}}'
    "</tool_call>"
)
JOKE_DICT_CALL = JOKE_CALL.replace('"Joke"', '"JokeDict"')
JOKE_JSON = '{"setup": "Why?", "punchline": "Because."}'


def _aggregate(chunks: list[Any]) -> Any:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


# --- tool calls --------------------------------------------------------------------------------


def test_tool_call_parsed() -> None:
    llm = ChatInferenceGuard(guard=forced_guard(WEATHER_CALL), max_tokens=96)
    message = llm.bind_tools([get_weather]).invoke("Weather in Paris?")

    assert message.content == ""
    assert len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call["name"] == "get_weather"
    assert call["args"] == {"city": "Paris"}
    assert call["id"].startswith("call_")
    assert call["type"] == "tool_call"
    assert message.invalid_tool_calls == []
    assert message.response_metadata["inferenceguard"]["certified"] is True


def test_tool_call_with_text_before() -> None:
    guard = forced_guard("Let me check. " + WEATHER_CALL)
    message = ChatInferenceGuard(guard=guard, max_tokens=96).bind_tools([get_weather]).invoke("Hi")

    assert message.content == "Let me check."
    assert [call["name"] for call in message.tool_calls] == ["get_weather"]


def test_invalid_tool_call_reported() -> None:
    raw = '{"name": "get_weather", "arguments": {"city": Paris}}'
    guard = forced_guard(f"<tool_call>{raw}</tool_call>")
    message = ChatInferenceGuard(guard=guard, max_tokens=96).bind_tools([get_weather]).invoke("Hi")

    assert message.tool_calls == []
    assert len(message.invalid_tool_calls) == 1
    assert message.invalid_tool_calls[0]["args"] == raw
    assert message.invalid_tool_calls[0]["error"]


def test_truncated_tool_call_is_invalid_in_both_paths() -> None:
    llm = ChatInferenceGuard(guard=forced_guard(WEATHER_CALL), max_tokens=40)
    tools = llm.bind_tools([get_weather])
    invoked = tools.invoke("Hi")
    streamed = _aggregate(list(tools.stream("Hi")))

    assert invoked.response_metadata["finish_reason"] == "length"
    assert invoked.tool_calls == []
    assert len(invoked.invalid_tool_calls) == 1
    assert streamed.tool_calls == []
    assert len(streamed.invalid_tool_calls) == 1


def test_tool_call_stream_matches_invoke() -> None:
    guard = forced_guard("Checking. " + WEATHER_CALL)
    llm = ChatInferenceGuard(guard=guard, max_tokens=96).bind_tools([get_weather])
    invoked = llm.invoke("Hi")
    chunks = list(llm.stream("Hi"))
    full = _aggregate(chunks)

    assert all("<tool" not in chunk.text for chunk in chunks)
    assert full.text == invoked.text == "Checking."
    assert [(c["name"], c["args"]) for c in full.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert chunks[-1].chunk_position == "last"


async def test_tool_call_astream_matches_invoke() -> None:
    guard = forced_guard(WEATHER_CALL)
    llm = ChatInferenceGuard(guard=guard, max_tokens=96).bind_tools([get_weather])
    chunks = [chunk async for chunk in llm.astream("Hi")]
    full = _aggregate(chunks)
    invoked = await llm.ainvoke("Hi")

    assert full.tool_calls[0]["args"] == invoked.tool_calls[0]["args"] == {"city": "Paris"}
    assert full.text == invoked.text == ""


def test_plain_text_without_tools_is_not_parsed() -> None:
    message = ChatInferenceGuard(guard=forced_guard(WEATHER_CALL), max_tokens=96).invoke("Hi")
    assert message.tool_calls == []
    assert message.text == WEATHER_CALL


def test_cost_model_checks_tool_arguments() -> None:
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": "Foxville"}}</tool_call>'
    guard = forced_guard(text, cost_model=banned_word_cost_model("foxville"))
    llm = ChatInferenceGuard(guard=guard, max_tokens=96).bind_tools([get_weather])

    message = llm.invoke("Weather?")
    chunks = list(llm.stream("Weather?"))

    assert message.tool_calls == []
    assert "Foxville" not in message.text
    assert message.response_metadata["finish_reason"] == "content_filter"
    assert all("Foxville" not in chunk.text for chunk in chunks)
    assert _aggregate(chunks).tool_calls == []


def test_tools_rendered_into_prompt() -> None:
    guard = forced_guard(WEATHER_CALL)
    recorder = PromptRecorder(guard.model)
    ChatInferenceGuard(guard=guard, max_tokens=96).bind_tools([get_weather, get_time]).invoke("Hi")
    recorder.remove()
    prompt = guard.tokenizer.decode(recorder.prompts[0])

    assert "get_weather" in prompt
    assert "Return the current weather in a city." in prompt
    assert "get_time" in prompt


def test_named_tool_choice_keeps_only_that_tool() -> None:
    guard = forced_guard(WEATHER_CALL)
    recorder = PromptRecorder(guard.model)
    llm = ChatInferenceGuard(guard=guard, max_tokens=96)
    message = llm.bind_tools([get_weather, get_time], tool_choice="get_weather").invoke("Hi")
    recorder.remove()
    prompt = guard.tokenizer.decode(recorder.prompts[0])

    assert "get_time" not in prompt
    assert "You must answer with a <tool_call> that calls the function get_weather." in prompt
    assert message.tool_calls[0]["name"] == "get_weather"


def test_any_tool_choice_adds_instruction() -> None:
    guard = forced_guard(WEATHER_CALL)
    recorder = PromptRecorder(guard.model)
    ChatInferenceGuard(guard=guard, max_tokens=8).bind_tools(
        [get_weather, get_time], tool_choice="any"
    ).invoke([("system", "Be brief."), ("human", "Hi")])
    recorder.remove()
    prompt = guard.tokenizer.decode(recorder.prompts[0])

    assert "Be brief." in prompt
    assert "calls one of the functions: get_weather, get_time." in prompt


def test_none_tool_choice_sends_no_tools() -> None:
    guard = forced_guard(WEATHER_CALL)
    recorder = PromptRecorder(guard.model)
    message = (
        ChatInferenceGuard(guard=guard, max_tokens=96)
        .bind_tools([get_weather], tool_choice="none")
        .invoke("Hi")
    )
    recorder.remove()

    assert "get_weather" not in guard.tokenizer.decode(recorder.prompts[0])
    assert message.tool_calls == []


@pytest.mark.parametrize("tool_choice", ["missing_tool", {"type": "function", "function": {}}, 3])
def test_bad_tool_choice_rejected(tool_choice) -> None:
    llm = ChatInferenceGuard(guard=forced_guard("ok"))
    with pytest.raises(ValueError, match="tool_choice"):
        llm.bind_tools([get_weather], tool_choice=tool_choice)


def test_tool_history_reaches_prompt() -> None:
    guard = forced_guard("It is sunny.")
    recorder = PromptRecorder(guard.model)
    history = [
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage("Sunny, 21 C", tool_call_id="c1"),
    ]
    message = (
        ChatInferenceGuard(guard=guard, max_tokens=16).bind_tools([get_weather]).invoke(history)
    )
    recorder.remove()
    prompt = guard.tokenizer.decode(recorder.prompts[0])

    assert message.text == "It is sunny."
    assert '"city": "Paris"' in prompt
    assert "Sunny, 21 C" in prompt


# --- structured output ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "forced_text", "expected"),
    [
        (Joke, JOKE_CALL, Joke(setup="Why?", punchline="Because.")),
        (JokeDict, JOKE_DICT_CALL, {"setup": "Why?", "punchline": "Because."}),
        (
            convert_to_json_schema(Joke),
            JOKE_CALL,
            {"setup": "Why?", "punchline": "Because."},
        ),
    ],
    ids=["pydantic", "typeddict", "json-schema"],
)
def test_structured_output_function_calling(schema, forced_text, expected) -> None:
    llm = ChatInferenceGuard(guard=forced_guard(forced_text), max_tokens=96)
    structured = llm.with_structured_output(schema)

    assert structured.invoke("Tell me a joke") == expected
    assert list(structured.stream("Tell me a joke"))[-1] == expected


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (Joke, Joke(setup="Why?", punchline="Because.")),
        (JokeDict, {"setup": "Why?", "punchline": "Because."}),
    ],
    ids=["pydantic", "typeddict"],
)
def test_structured_output_json_methods(method, schema, expected) -> None:
    guard = forced_guard(JOKE_JSON)
    recorder = PromptRecorder(guard.model)
    structured = ChatInferenceGuard(guard=guard, max_tokens=96).with_structured_output(
        schema, method=method
    )
    result = structured.invoke("Tell me a joke")
    recorder.remove()
    prompt = guard.tokenizer.decode(recorder.prompts[0])

    assert result == expected
    assert "Answer with a single JSON object" in prompt
    if method == "json_schema":
        assert '"punchline"' in prompt


def test_json_mode_without_schema() -> None:
    structured = ChatInferenceGuard(
        guard=forced_guard(JOKE_JSON), max_tokens=96
    ).with_structured_output(None, method="json_mode")
    assert structured.invoke("Joke?") == {"setup": "Why?", "punchline": "Because."}


def test_structured_output_reports_format_to_callbacks() -> None:
    options: list[dict[str, Any]] = []

    class OptionsRecorder(BaseCallbackHandler):
        def on_chat_model_start(self, serialized, messages, **kwargs) -> None:
            options.append(dict(kwargs.get("options") or {}))

    llm = ChatInferenceGuard(guard=forced_guard(JOKE_CALL), max_tokens=96)
    llm.with_structured_output(Joke).invoke("Joke?", config={"callbacks": [OptionsRecorder()]})

    assert options[0]["ls_structured_output_format"]["schema"] == convert_to_json_schema(Joke)


@pytest.mark.parametrize("method", ["function_calling", "json_schema", "json_mode"])
def test_structured_refusal_raises(method) -> None:
    guard = forced_guard(JOKE_JSON, cost_model=banned_word_cost_model("because"))
    structured = ChatInferenceGuard(guard=guard, max_tokens=96).with_structured_output(
        Joke, method=method
    )
    with pytest.raises(ModelRefusalError, match="fallback") as raised:
        structured.invoke("Joke?")

    raw = raised.value.raw_message
    assert raw is not None
    assert raw.response_metadata["finish_reason"] == "content_filter"


def test_structured_refusal_with_include_raw() -> None:
    guard = forced_guard(JOKE_CALL, cost_model=banned_word_cost_model("because"))
    structured = ChatInferenceGuard(guard=guard, max_tokens=96).with_structured_output(
        Joke, include_raw=True
    )
    result = structured.invoke("Joke?")

    assert result["parsed"] is None
    assert isinstance(result["parsing_error"], ModelRefusalError)
    assert isinstance(result["raw"], AIMessage)


def test_structured_include_raw_success() -> None:
    structured = ChatInferenceGuard(
        guard=forced_guard(JOKE_CALL), max_tokens=96
    ).with_structured_output(Joke, include_raw=True)
    result = structured.invoke("Joke?")

    assert result["parsed"] == Joke(setup="Why?", punchline="Because.")
    assert result["parsing_error"] is None
    assert result["raw"].tool_calls[0]["name"] == "Joke"


def test_structured_output_rejects_bad_arguments() -> None:
    llm = ChatInferenceGuard(guard=forced_guard("ok"))
    with pytest.raises(ValueError, match="method"):
        llm.with_structured_output(Joke, method="xml")
    with pytest.raises(ValueError, match="needs a schema"):
        llm.with_structured_output(None, method="json_schema")
    with pytest.raises(ValueError, match="Unsupported"):
        llm.with_structured_output(Joke, temperature=1)


def test_response_format_bound_directly() -> None:
    guard = forced_guard(JOKE_JSON)
    recorder = PromptRecorder(guard.model)
    message = (
        ChatInferenceGuard(guard=guard, max_tokens=96)
        .bind(response_format={"type": "json_object"})
        .invoke("Joke?")
    )
    recorder.remove()

    assert json.loads(message.text) == {"setup": "Why?", "punchline": "Because."}
    assert "Answer with a single JSON object" in guard.tokenizer.decode(recorder.prompts[0])


def test_bad_response_format_rejected() -> None:
    llm = ChatInferenceGuard(guard=forced_guard("ok"))
    with pytest.raises(ValueError, match="response_format"):
        llm.invoke("Hi", response_format={"type": "xml"})


# --- agents -----------------------------------------------------------------------------------


def _weather_agent_script(prompt: str) -> str:
    if "<|im_start|>tool" in prompt:
        return "It is sunny in Paris."
    return WEATHER_CALL


def test_create_agent_calls_tool_then_answers() -> None:
    from langchain.agents import create_agent

    calls: list[str] = []

    @tool
    def get_weather(city: str) -> str:
        """Return the current weather in a city."""
        calls.append(city)
        return f"Sunny in {city}."

    llm = ChatInferenceGuard(guard=scripted_guard(_weather_agent_script), max_tokens=96)
    agent = create_agent(llm, tools=[get_weather])
    result = agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]})
    messages = result["messages"]

    assert calls == ["Paris"]
    assert isinstance(messages[1], AIMessage)
    assert messages[1].tool_calls[0]["name"] == "get_weather"
    assert isinstance(messages[2], ToolMessage)
    assert messages[2].content == "Sunny in Paris."
    assert messages[-1].text == "It is sunny in Paris."
    assert messages[-1].response_metadata["inferenceguard"]["certified"] is True


async def test_create_agent_async() -> None:
    from langchain.agents import create_agent

    llm = ChatInferenceGuard(guard=scripted_guard(_weather_agent_script), max_tokens=96)
    agent = create_agent(llm, tools=[get_weather])
    result = await agent.ainvoke({"messages": [HumanMessage("Weather in Paris?")]})

    assert result["messages"][2].content == "It is sunny in Paris."
    assert result["messages"][-1].text == "It is sunny in Paris."
