"""Conformance of `InferenceGuardLLM` to LlamaIndex's LLM contract.

LlamaIndex ships no standard test suite for LLM integrations. This module checks the contract
that its query engines, agents and callbacks rely on: the same text from every entry point,
streamed deltas, instrumentation events, token counting, stop sequences, an agent round trip
and a query engine on the embedded default models.
"""

from __future__ import annotations

import json

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.tools import FunctionTool
from pydantic import Field
from tiny_models import make_forced_model, make_scripted_model, make_tiny_lm

from llamaindex_inferenceguard import InferenceGuardLLM
from shared_core.config import GuardConfig
from shared_core.engine import InferenceGuard
from shared_core.scoring import CallableCostModel

PROMPT = "Write one line about the sea."
MESSAGES = [ChatMessage(role=MessageRole.USER, content=PROMPT)]
MODES = [
    (mode, stream, use_async)
    for mode in ("chat", "complete")
    for stream in (False, True)
    for use_async in (False, True)
]
MODE_IDS = [
    f"{'a' if use_async else ''}{'stream_' if stream else ''}{mode}"
    for mode, stream, use_async in MODES
]


def no_zebra_cost() -> CallableCostModel:
    return CallableCostModel(
        lambda prompt, response: float("zebra" in response.lower()), threshold=0.5, name="no-zebra"
    )


def make_guard(model, tokenizer, **settings) -> InferenceGuard:
    config = GuardConfig.preset("fast").replace(**{"max_new_tokens": 24, **settings})
    return InferenceGuard(model, tokenizer, no_zebra_cost(), config=config)


@pytest.fixture(scope="module")
def tiny_guard() -> InferenceGuard:
    model, tokenizer = make_tiny_lm(seed=1)
    return make_guard(model, tokenizer)


@pytest.fixture(scope="module")
def forced_guard() -> InferenceGuard:
    model, tokenizer = make_forced_model("alpha beta STOP gamma delta")
    return make_guard(model, tokenizer, max_new_tokens=64)


class Responses:
    """The responses of one call in one mode, and the final text they give."""

    def __init__(self, responses: list, mode: str) -> None:
        self.items = responses
        self.mode = mode

    @property
    def final(self):
        return self.items[-1]

    @property
    def text(self) -> str:
        return self.final.message.content if self.mode == "chat" else self.final.text

    @property
    def deltas(self) -> list[str]:
        return [response.delta or "" for response in self.items]

    def cumulative(self, response) -> str:
        return response.message.content if self.mode == "chat" else response.text


async def call(
    llm: InferenceGuardLLM, mode: str, stream: bool, use_async: bool, **kwargs
) -> Responses:
    """Call `llm` through one of its eight entry points and collect every response."""
    payload = MESSAGES if mode == "chat" else PROMPT
    name = mode
    if stream:
        name = f"stream_{name}"
    if use_async:
        name = f"a{name}"
    method = getattr(llm, name)
    if not stream:
        result = await method(payload, **kwargs) if use_async else method(payload, **kwargs)
        return Responses([result], mode)
    if use_async:
        generator = await method(payload, **kwargs)
        return Responses([response async for response in generator], mode)
    return Responses(list(method(payload, **kwargs)), mode)


class EventRecorder(BaseEventHandler):
    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventRecorder"

    def handle(self, event, **kwargs) -> None:
        self.events.append(event)

    def count(self, event_type: type) -> int:
        return sum(isinstance(event, event_type) for event in self.events)


@pytest.fixture
def recorder():
    recorder = EventRecorder()
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(recorder)
    yield recorder
    dispatcher.event_handlers.remove(recorder)


# --- one text from every entry point ---------------------------------------------------------


@pytest.mark.parametrize(("mode", "stream", "use_async"), MODES, ids=MODE_IDS)
async def test_same_text_for_same_seed(tiny_guard, mode, stream, use_async):
    llm = InferenceGuardLLM(tiny_guard)
    expected = tiny_guard.generate([{"role": "user", "content": PROMPT}], seed=11).text

    responses = await call(llm, mode, stream, use_async, seed=11)

    assert responses.text == expected


@pytest.mark.parametrize(
    ("mode", "stream", "use_async"),
    [m for m in MODES if m[1]],
    ids=[i for i in MODE_IDS if "stream" in i],
)
async def test_deltas_add_up(tiny_guard, mode, stream, use_async):
    llm = InferenceGuardLLM(tiny_guard)

    responses = await call(llm, mode, stream, use_async, seed=3)

    assert "".join(responses.deltas) == responses.text
    running = ""
    for response in responses.items:
        running += response.delta or ""
        assert responses.cumulative(response) == running


@pytest.mark.parametrize(
    ("mode", "stream", "use_async"),
    [m for m in MODES if m[1]],
    ids=[i for i in MODE_IDS if "stream" in i],
)
async def test_stream_usage_on_last_chunk(tiny_guard, mode, stream, use_async):
    llm = InferenceGuardLLM(tiny_guard)

    responses = await call(llm, mode, stream, use_async, seed=3)

    assert all(response.raw is None for response in responses.items[:-1])
    usage = json.loads(json.dumps(responses.final.raw))["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert responses.final.additional_kwargs["finish_reason"] in ("stop", "length")


# --- instrumentation and callbacks -----------------------------------------------------------


@pytest.mark.parametrize(("mode", "stream", "use_async"), MODES, ids=MODE_IDS)
async def test_instrumentation_events_once(tiny_guard, recorder, mode, stream, use_async):
    llm = InferenceGuardLLM(tiny_guard)
    start, progress, end = (
        (LLMChatStartEvent, LLMChatInProgressEvent, LLMChatEndEvent)
        if mode == "chat"
        else (LLMCompletionStartEvent, LLMCompletionInProgressEvent, LLMCompletionEndEvent)
    )

    responses = await call(llm, mode, stream, use_async, seed=5)

    assert recorder.count(start) == 1
    assert recorder.count(end) == 1
    assert recorder.count(progress) == (len(responses.items) if stream else 0)
    end_event = next(event for event in recorder.events if isinstance(event, end))
    assert end_event.response == responses.final


@pytest.mark.parametrize(("mode", "stream", "use_async"), MODES, ids=MODE_IDS)
async def test_token_counting_handler_counts_usage(tiny_guard, mode, stream, use_async):
    counter = TokenCountingHandler(tokenizer=tiny_guard.tokenizer.encode)
    llm = InferenceGuardLLM(tiny_guard, callback_manager=CallbackManager([counter]))

    responses = await call(llm, mode, stream, use_async, seed=6)
    usage = responses.final.raw["usage"]

    assert len(counter.llm_token_counts) == 1
    assert counter.prompt_llm_token_count == usage["prompt_tokens"]
    assert counter.completion_llm_token_count == usage["completion_tokens"]
    assert counter.total_llm_token_count == usage["total_tokens"]


# --- stop sequences --------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "stream", "use_async"), MODES, ids=MODE_IDS)
async def test_stop_sequence(forced_guard, mode, stream, use_async):
    llm = InferenceGuardLLM(forced_guard)

    responses = await call(llm, mode, stream, use_async, seed=0, stop=["STOP", "delta"])

    assert responses.text.startswith("alpha beta")
    assert "STOP" not in responses.text
    assert "gamma" not in responses.text


def test_instance_stop_sequence(forced_guard):
    llm = InferenceGuardLLM(forced_guard, stop="STOP")

    text = llm.complete("Go", seed=0).text

    assert text.startswith("alpha beta")
    assert "STOP" not in text


# --- agents ----------------------------------------------------------------------------------


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def scripted_agent_llm() -> InferenceGuardLLM:
    call = json.dumps({"name": "multiply", "arguments": {"a": 6, "b": 7}})

    def answer(prompt: str) -> str:
        # Reply from the tool result once it is in the prompt, otherwise call the tool.
        if "<|im_start|>tool\n42" in prompt:
            return "6 times 7 is 42."
        return f"<tool_call>{call}</tool_call>"

    # Tool schemas and the tool turn make prompts longer than the default 512 positions.
    model, tokenizer = make_scripted_model(answer, max_position_embeddings=2048)
    return InferenceGuardLLM(make_guard(model, tokenizer, max_new_tokens=96), seed=0)


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "non-streaming"])
async def test_function_agent_round_trip(streaming):
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(multiply)],
        llm=scripted_agent_llm(),
        system_prompt="Use the tools to answer.",
        streaming=streaming,
    )

    handler = agent.run(user_msg="What is 6 times 7?")
    output = await handler

    assert output.response.content == "6 times 7 is 42."
    assert [call.tool_name for call in output.tool_calls] == ["multiply"]
    assert output.tool_calls[0].tool_kwargs == {"a": 6, "b": 7}
    assert output.tool_calls[0].tool_output.raw_output == 42
    memory = await handler.ctx.store.get("memory")
    messages = await memory.aget_all()
    tool_messages = [message for message in messages if message.role == MessageRole.TOOL]
    assert [message.content for message in tool_messages] == ["42"]


# --- query engine on the embedded default (integration) --------------------------------------

DOCUMENTS = [
    "The Lumen river flows through the town of Arden and freezes every January.",
    "Arden's bakery sells rye bread and honey cakes every morning.",
    "The town library of Arden opens at nine and closes at five.",
]


@pytest.mark.integration
def test_query_engine_answers_through_guard(recorder):
    from llamaindex_inferenceguard.embeddings import MiniLMEmbedding

    llm = InferenceGuardLLM.from_defaults(
        config=GuardConfig.preset("fast"), max_new_tokens=24, seed=0
    )
    index = VectorStoreIndex.from_documents(
        [Document(text=text) for text in DOCUMENTS], embed_model=MiniLMEmbedding()
    )
    engine = index.as_query_engine(llm=llm, similarity_top_k=1)

    response = engine.query("When does the river freeze?")

    assert InferenceGuardLLM().guard is llm.guard
    assert "Lumen river" in response.source_nodes[0].node.get_content()
    ends = [event for event in recorder.events if isinstance(event, LLMChatEndEvent)]
    assert len(ends) == 1
    answer = ends[0].response
    assert str(response).strip() == answer.message.content.strip()
    assert answer.raw["report"]["cost_model"] == llm.guard.cost_model.name
    if answer.additional_kwargs["certified"]:
        assert answer.raw["report"]["final_cost"] <= answer.raw["report"]["budget"]
    else:
        assert answer.additional_kwargs["finish_reason"] == "content_filter"
