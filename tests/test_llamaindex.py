"""Unit tests of the LlamaIndex adapter on engines over tiny in-process models."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from llama_index.core.base.llms.types import (
    ChatMessage,
    ImageBlock,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMChatStartEvent
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel, Field
from tiny_models import make_forced_model, make_scripted_model, make_tiny_lm, make_tokenizer

from llamaindex_inferenceguard import InferenceGuardLLM, MiniLMEmbedding
from llamaindex_inferenceguard._messages import (
    ToolTextStream,
    to_engine_messages,
    visible_tool_text,
)
from shared_core.config import GuardConfig
from shared_core.engine import InferenceGuard
from shared_core.result import SafetyViolationError
from shared_core.scoring import CallableCostModel

BANNED_WORD = "zebra"
USER = [ChatMessage(role=MessageRole.USER, content="Say hello.")]


def banned_word_cost(word: str = BANNED_WORD) -> CallableCostModel:
    """A cost model that flags any response containing `word` (cost 1 against budget 0.5)."""
    return CallableCostModel(
        lambda prompt, response: float(word in response.lower()),
        threshold=0.5,
        name=f"no-{word}",
    )


def make_guard(model, tokenizer, cost_model=None, **settings) -> InferenceGuard:
    config = GuardConfig.preset("fast").replace(**{"max_new_tokens": 24, **settings})
    return InferenceGuard(model, tokenizer, cost_model or banned_word_cost(), config=config)


def forced_llm(text: str, cost_model=None, **settings) -> InferenceGuardLLM:
    model, tokenizer = make_forced_model(text)
    guard = make_guard(model, tokenizer, cost_model, max_new_tokens=96)
    return InferenceGuardLLM(guard, **settings)


@pytest.fixture(scope="module")
def tiny_guard() -> InferenceGuard:
    model, tokenizer = make_tiny_lm()
    return make_guard(model, tokenizer)


def tool_call_text(tool_name: str, **arguments) -> str:
    payload = {"name": tool_name, "arguments": arguments}
    return "<tool_call>" + json.dumps(payload) + "</tool_call>"


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


class Album(BaseModel):
    """An album."""

    name: str = Field(description="The album's title.")
    year: int = Field(description="The year of release.")


# --- construction and settings ---------------------------------------------------------------


def test_constructor_loads_nothing():
    llm = InferenceGuardLLM(max_tokens=32, stop="END")

    assert llm._guard is None
    assert llm.guard_settings == {"max_new_tokens": 32, "stop": ["END"]}


def test_serialization_round_trip():
    llm = InferenceGuardLLM(temperature=0.5, seed=3, system_prompt="Be brief.")

    data = llm.to_dict()
    restored = InferenceGuardLLM.from_dict(data)

    assert data["class_name"] == "InferenceGuardLLM"
    assert InferenceGuardLLM.class_name() == "InferenceGuardLLM"
    assert json.loads(json.dumps(data))["guard_settings"] == {"temperature": 0.5, "seed": 3}
    assert restored.guard_settings == llm.guard_settings
    assert restored.system_prompt == "Be brief."


def test_constructor_rejects_unknown_setting():
    with pytest.raises(TypeError, match=r"unknown keyword argument.*'temprature'"):
        InferenceGuardLLM(temprature=0.5)


def test_constructor_rejects_alias_with_field():
    with pytest.raises(TypeError, match="both"):
        InferenceGuardLLM(max_tokens=5, max_new_tokens=6)


def test_constructor_rejects_invalid_value(tiny_guard):
    with pytest.raises(ValueError, match="temperature"):
        InferenceGuardLLM(tiny_guard, temperature=0)


def test_constructor_rejects_non_engine():
    with pytest.raises(TypeError, match="InferenceGuard"):
        InferenceGuardLLM(guard="not an engine")


def test_config_applies_preset(tiny_guard):
    llm = InferenceGuardLLM(tiny_guard, config=GuardConfig.preset("fast"), max_new_tokens=7)

    assert llm.guard_settings["num_beams"] == 1
    assert llm.guard_settings["max_new_tokens"] == 7
    assert llm.metadata.num_output == 7


def test_metadata_reads_model_config(tiny_guard):
    llm = InferenceGuardLLM(tiny_guard, max_new_tokens=12)

    metadata = llm.metadata

    assert metadata.context_window == tiny_guard.model.config.max_position_embeddings
    assert metadata.context_window == tiny_guard.context_window
    assert metadata.num_output == 12
    assert metadata.model_name == tiny_guard.model_name
    assert metadata.is_chat_model is True
    assert metadata.is_function_calling_model is True


def test_call_rejects_unknown_kwarg(tiny_guard):
    llm = InferenceGuardLLM(tiny_guard)

    with pytest.raises(TypeError, match=r"chat got unknown keyword argument.*'frequency_penalty'"):
        llm.chat(USER, frequency_penalty=0.5)
    with pytest.raises(TypeError, match="stream_complete got unknown"):
        llm.stream_complete("hi", presence_penalty=1)


def test_call_rejects_invalid_value_before_streaming(tiny_guard):
    llm = InferenceGuardLLM(tiny_guard)

    with pytest.raises(ValueError, match="top_p"):
        llm.stream_chat(USER, top_p=2.0)


# --- responses -------------------------------------------------------------------------------


def test_chat_raw_is_json_with_usage(tiny_guard):
    llm = InferenceGuardLLM(tiny_guard)

    response = llm.chat(USER, seed=1)
    raw = json.loads(json.dumps(response.raw))

    assert raw["text"] == response.message.content
    assert raw["model"] == tiny_guard.model_name
    assert raw["usage"]["prompt_tokens"] == tiny_guard.count_tokens(
        [{"role": "user", "content": "Say hello."}]
    )
    assert raw["usage"]["completion_tokens"] > 0
    assert raw["usage"]["total_tokens"] == (
        raw["usage"]["prompt_tokens"] + raw["usage"]["completion_tokens"]
    )
    assert raw["report"]["cost_model"] == f"no-{BANNED_WORD}"
    assert response.additional_kwargs["finish_reason"] in ("stop", "length")
    assert response.additional_kwargs["certified"] is True
    assert "inferenceguard_fallback" not in response.additional_kwargs


def test_chat_honours_call_settings(tiny_guard):
    llm = InferenceGuardLLM(tiny_guard)
    settings = {"temperature": 1.3, "top_p": 0.8, "seed": 5}

    response = llm.chat(USER, max_tokens=4, **settings)
    expected = tiny_guard.generate(
        [{"role": "user", "content": "Say hello."}], max_new_tokens=4, **settings
    )

    assert response.message.content == expected.text
    assert response.raw["usage"] == expected.usage.to_dict()
    assert response.additional_kwargs["finish_reason"] == expected.finish_reason


def test_max_tokens_limits_answer():
    llm = forced_llm("one two three four five six seven eight nine ten")

    full = llm.complete("Count.", seed=0)
    short = llm.complete("Count.", seed=0, max_tokens=3)

    assert full.text == "one two three four five six seven eight nine ten"
    assert full.additional_kwargs["finish_reason"] == "stop"
    assert full.text.startswith(short.text)
    assert len(short.text) < len(full.text)
    assert short.additional_kwargs["finish_reason"] == "length"


def test_instance_settings_apply_and_calls_override():
    llm = forced_llm("one two three four five six seven eight nine ten", max_new_tokens=3)

    short = llm.complete("Count.", seed=0)
    longer = llm.complete("Count.", seed=0, max_new_tokens=60)

    assert llm.metadata.num_output == 3
    assert short.additional_kwargs["finish_reason"] == "length"
    assert longer.text == "one two three four five six seven eight nine ten"


def test_complete_sends_system_prompt():
    model, tokenizer = make_scripted_model(
        lambda prompt: "with system" if "<|im_start|>system\nBe terse." in prompt else "without"
    )
    guard = make_guard(model, tokenizer)
    llm = InferenceGuardLLM(guard, system_prompt="Be terse.")

    assert llm.complete("Hi", seed=0).text == "with system"
    assert llm.chat(USER, seed=0).message.content == "without"


def test_stop_sequence_ends_answer():
    llm = forced_llm("alpha beta STOP gamma")

    text = llm.complete("Go", stop=["STOP"], seed=0).text

    assert text.startswith("alpha beta")
    assert "STOP" not in text
    assert "gamma" not in text


def test_fallback_is_marked():
    llm = forced_llm(f"a {BANNED_WORD} story")

    response = llm.chat(USER, seed=0)

    assert response.message.content == GuardConfig().refusal_text
    assert response.additional_kwargs["inferenceguard_fallback"] == "refuse"
    assert response.additional_kwargs["finish_reason"] == "content_filter"
    assert response.additional_kwargs["certified"] is False
    assert response.raw["report"]["fallback"] == "refuse"


def test_fallback_raise_per_call():
    llm = forced_llm(f"a {BANNED_WORD} story")

    with pytest.raises(SafetyViolationError):
        llm.chat(USER, seed=0, fallback="raise")


def test_stream_fallback_is_marked_on_last_chunk():
    llm = forced_llm(f"a {BANNED_WORD} story")

    responses = list(llm.stream_chat(USER, seed=0))

    assert BANNED_WORD not in responses[-1].message.content
    assert responses[-1].additional_kwargs["inferenceguard_fallback"] == "refuse"
    assert responses[-1].raw["report"]["certified"] is False


def test_from_model_id_loads_folder(tmp_path):
    model, tokenizer = make_tiny_lm()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    llm = InferenceGuardLLM.from_model_id(
        str(tmp_path),
        cost_model=banned_word_cost(),
        torch_dtype=torch.bfloat16,
        max_new_tokens=6,
        seed=0,
    )
    response = llm.chat(USER)

    assert llm.metadata.model_name == str(tmp_path)
    assert llm.guard.model.dtype == torch.bfloat16
    assert llm.metadata.context_window == model.config.max_position_embeddings
    assert response.raw["usage"]["prompt_tokens"] > 0
    assert response.additional_kwargs["finish_reason"] in ("stop", "length")


def test_engine_shared_by_instances(tiny_guard):
    first = InferenceGuardLLM(tiny_guard, seed=4)
    second = InferenceGuardLLM(tiny_guard, seed=4, max_new_tokens=8)

    assert first.guard is second.guard
    assert second.complete("Hi").text == tiny_guard.generate("Hi", seed=4, max_new_tokens=8).text


# --- message conversion ----------------------------------------------------------------------


def test_messages_convert_roles_and_tool_calls():
    history = [
        ChatMessage(role=MessageRole.SYSTEM, content="sys"),
        ChatMessage(role=MessageRole.USER, content="What is 6 times 7?"),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[
                TextBlock(text=""),
                ToolCallBlock(
                    tool_call_id="call_1", tool_name="multiply", tool_kwargs={"a": 6, "b": 7}
                ),
            ],
        ),
        ChatMessage(
            role=MessageRole.TOOL, content="42", additional_kwargs={"tool_call_id": "call_1"}
        ),
        ChatMessage(role=MessageRole.CHATBOT, content="It is 42."),
    ]

    converted = to_engine_messages(history)

    assert [m["role"] for m in converted] == ["system", "user", "assistant", "tool", "assistant"]
    assert converted[2]["tool_calls"] == [
        {
            "type": "function",
            "id": "call_1",
            "function": {"name": "multiply", "arguments": {"a": 6, "b": 7}},
        }
    ]
    assert converted[3]["content"] == "42"
    assert "tool_calls" not in converted[4]


def test_messages_read_openai_style_tool_calls():
    message = ChatMessage(
        role=MessageRole.ASSISTANT,
        content="",
        additional_kwargs={
            "tool_calls": [
                {
                    "id": "c9",
                    "type": "function",
                    "function": {"name": "multiply", "arguments": '{"a": 2, "b": 3}'},
                },
            ]
        },
    )

    converted = to_engine_messages([message])

    assert converted[0]["tool_calls"][0]["function"]["arguments"] == {"a": 2, "b": 3}


def test_messages_reject_images():
    message = ChatMessage(
        role=MessageRole.USER,
        blocks=[TextBlock(text="look"), ImageBlock(image=b"\x89PNG\r\n\x1a\n")],
    )

    with pytest.raises(ValueError, match=r"accepts text only.*'image'"):
        to_engine_messages([message])


def test_messages_reject_empty_list():
    with pytest.raises(ValueError, match="empty message list"):
        to_engine_messages([])


# --- tool-call text in streams ---------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "Hi",
        " ",
        "<",
        "tool",
        "<tool_call>",
        "</tool_call>",
        '{"name"',
        ': "f"}',
        "x",
        "\n",
        "_call>",
        "</",
    ]
)


@given(st.lists(_PIECES, max_size=14))
def test_tool_text_stream_deltas_add_up(pieces):
    stream = ToolTextStream()
    deltas = [stream.feed(piece) for piece in pieces]
    deltas.append(stream.feed("", final=True))

    assert "".join(deltas) == visible_tool_text("".join(pieces))


def test_visible_tool_text_holds_partial_tag():
    assert visible_tool_text("Sure <tool", final=False) == "Sure"
    assert visible_tool_text("Sure <tool") == "Sure <tool"
    assert visible_tool_text('Sure <tool_call>{"name": "f"}</tool_call> done') == "Sure  done"


# --- tool calling ----------------------------------------------------------------------------


def test_chat_with_tools_parses_call():
    llm = forced_llm(tool_call_text("multiply", a=6, b=7))
    tool = FunctionTool.from_defaults(multiply)

    response = llm.chat_with_tools([tool], user_msg="What is 6 times 7?", seed=0)
    calls = llm.get_tool_calls_from_response(response)

    assert len(calls) == 1
    assert calls[0].tool_name == "multiply"
    assert calls[0].tool_kwargs == {"a": 6, "b": 7}
    assert calls[0].tool_id.startswith("call_")
    assert response.message.content == ""


def test_predict_and_call_runs_tool():
    llm = forced_llm(tool_call_text("multiply", a=6, b=7))
    tool = FunctionTool.from_defaults(multiply)

    output = llm.predict_and_call([tool], user_msg="What is 6 times 7?", seed=0)

    assert output.response == "42"
    assert output.sources[0].tool_name == "multiply"
    assert output.sources[0].raw_output == 42


def test_tool_calls_missing_raise():
    llm = forced_llm("no tools today")

    response = llm.chat_with_tools([FunctionTool.from_defaults(multiply)], user_msg="Hi", seed=0)

    assert llm.get_tool_calls_from_response(response, error_on_no_tool_call=False) == []
    with pytest.raises(ValueError, match=r"at least one tool call.*no tools today"):
        llm.get_tool_calls_from_response(response)


def test_cost_model_checks_tool_arguments():
    tool = FunctionTool.from_defaults(multiply)
    flagged = forced_llm(tool_call_text("multiply", a=6, b=7, note=BANNED_WORD))
    allowed = forced_llm(tool_call_text("multiply", a=6, b=7, note="horse"))

    blocked = flagged.chat_with_tools([tool], user_msg="Multiply", seed=0)
    passed = allowed.chat_with_tools([tool], user_msg="Multiply", seed=0)

    assert flagged.get_tool_calls_from_response(blocked, error_on_no_tool_call=False) == []
    assert blocked.additional_kwargs["inferenceguard_fallback"] == "refuse"
    assert allowed.get_tool_calls_from_response(passed)[0].tool_kwargs["note"] == "horse"


def test_single_tool_call_unless_parallel():
    text = tool_call_text("multiply", a=1, b=2) + "\n" + tool_call_text("multiply", a=3, b=4)
    llm = forced_llm(text, max_new_tokens=150)
    tool = FunctionTool.from_defaults(multiply)

    single = llm.chat_with_tools([tool], user_msg="Go", seed=0)
    parallel = llm.chat_with_tools([tool], user_msg="Go", seed=0, allow_parallel_tool_calls=True)

    assert [c.tool_kwargs for c in llm.get_tool_calls_from_response(single)] == [{"a": 1, "b": 2}]
    assert len(llm.get_tool_calls_from_response(parallel)) == 2


def test_tool_history_reaches_prompt():
    model, tokenizer = make_scripted_model(
        lambda prompt: "seen" if "<|im_start|>tool\n42" in prompt else "missing"
    )
    llm = InferenceGuardLLM(make_guard(model, tokenizer))
    history = to_history_with_tool_result()

    response = llm.chat_with_tools(
        [FunctionTool.from_defaults(multiply)], chat_history=history, seed=0
    )

    assert response.message.content == "seen"


def to_history_with_tool_result() -> list[ChatMessage]:
    return [
        ChatMessage(role=MessageRole.USER, content="What is 6 times 7?"),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[
                TextBlock(text=""),
                ToolCallBlock(
                    tool_call_id="call_1", tool_name="multiply", tool_kwargs={"a": 6, "b": 7}
                ),
            ],
        ),
        ChatMessage(
            role=MessageRole.TOOL, content="42", additional_kwargs={"tool_call_id": "call_1"}
        ),
    ]


@pytest.mark.parametrize(
    ("options", "instruction"),
    [
        ({"tool_required": True}, "Answer only with a tool call."),
        ({"tool_choice": "required"}, "Answer only with a tool call."),
        ({"tool_choice": "multiply"}, "Answer only with a call of the tool 'multiply'."),
        (
            {"tool_choice": {"type": "function", "function": {"name": "multiply"}}},
            "Answer only with a call of the tool 'multiply'.",
        ),
    ],
)
def test_tool_choice_adds_instruction(options, instruction):
    model, tokenizer = make_scripted_model(
        lambda prompt: "instructed" if instruction in prompt else "free"
    )
    llm = InferenceGuardLLM(make_guard(model, tokenizer))

    response = llm.chat_with_tools(
        [FunctionTool.from_defaults(multiply)], user_msg="Hi", seed=0, **options
    )

    assert response.message.content == "instructed"


def test_tool_choice_none_hides_tools():
    model, tokenizer = make_scripted_model(
        lambda prompt: "offered" if '"multiply"' in prompt else "hidden"
    )
    llm = InferenceGuardLLM(make_guard(model, tokenizer))
    tool = FunctionTool.from_defaults(multiply)

    assert llm.chat_with_tools([tool], user_msg="Hi", seed=0).message.content == "offered"
    hidden = llm.chat_with_tools([tool], user_msg="Hi", seed=0, tool_choice="none")
    assert hidden.message.content == "hidden"


def test_tool_choice_unknown_name_rejected(tiny_guard):
    llm = InferenceGuardLLM(tiny_guard)

    with pytest.raises(ValueError, match=r"tool_choice='divide'.*multiply"):
        llm.chat_with_tools(
            [FunctionTool.from_defaults(multiply)], user_msg="Hi", tool_choice="divide"
        )


def test_stream_with_tools_holds_call_text():
    text = "Let me compute. " + tool_call_text("multiply", a=6, b=7)
    llm = forced_llm(text)

    responses = list(
        llm.stream_chat_with_tools(
            [FunctionTool.from_defaults(multiply)], user_msg="6 times 7?", seed=0
        )
    )

    assert "".join(r.delta for r in responses) == "Let me compute."
    assert all("<tool" not in r.message.content for r in responses)
    assert responses[-1].message.content == "Let me compute."
    calls = llm.get_tool_calls_from_response(responses[-1])
    assert calls[0].tool_kwargs == {"a": 6, "b": 7}


# --- structured output -----------------------------------------------------------------------


def test_structured_predict_returns_model():
    llm = forced_llm(tool_call_text("Album", name="Blue", year=1971), seed=0)

    album = llm.structured_predict(
        Album, PromptTemplate("Name an album about {topic}."), topic="the sky"
    )

    assert album == Album(name="Blue", year=1971)


async def test_astructured_predict_returns_model():
    llm = forced_llm(tool_call_text("Album", name="Blue", year=1971), seed=0)

    album = await llm.astructured_predict(
        Album, PromptTemplate("Name an album about {topic}."), topic="the sky"
    )

    assert album == Album(name="Blue", year=1971)


def test_as_structured_llm_chat():
    llm = forced_llm(tool_call_text("Album", name="Blue", year=1971), seed=0)

    structured = llm.as_structured_llm(Album)
    response = structured.chat([ChatMessage(role=MessageRole.USER, content="An album, please.")])

    assert response.raw == Album(name="Blue", year=1971)
    assert json.loads(response.message.content) == {"name": "Blue", "year": 1971}


def test_structured_predict_fallback_fails_clearly():
    llm = forced_llm(tool_call_text("Album", name=BANNED_WORD, year=1971), seed=0)

    with pytest.raises(ValueError, match=r"at least one tool call.*'refuse' fallback"):
        llm.structured_predict(Album, PromptTemplate("Name an album."))


# --- native async ----------------------------------------------------------------------------


class _StartEndRecorder(BaseEventHandler):
    names: list[str] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "StartEndRecorder"

    def handle(self, event, **kwargs) -> None:
        if isinstance(event, LLMChatStartEvent | LLMChatEndEvent):
            self.names.append(type(event).__name__)


async def test_concurrent_achat_overlap_and_loop_ticks():
    release = threading.Event()

    def blocking_cost(prompt: str, response: str) -> float:
        # Blocks generation until the event loop has seen both calls start.
        if not release.wait(timeout=120):
            msg = "the event loop never released the cost model"
            raise TimeoutError(msg)
        return 0.0

    model, tokenizer = make_tiny_lm()
    cost = CallableCostModel(blocking_cost, threshold=0.5, name="blocking")
    llm = InferenceGuardLLM(make_guard(model, tokenizer, cost, max_new_tokens=8))
    recorder = _StartEndRecorder()
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(recorder)
    calls_done = asyncio.Event()

    async def ticker() -> None:
        # Release the cost model only after the loop has run with both calls in flight.
        ticks_after_starts = 0
        while not calls_done.is_set():
            if recorder.names.count("LLMChatStartEvent") == 2:
                recorder.names.append("tick")
                ticks_after_starts += 1
                if ticks_after_starts == 3:
                    release.set()
            await asyncio.sleep(0.001)

    ticking = asyncio.create_task(ticker())
    try:
        first, second = await asyncio.gather(llm.achat(USER, seed=1), llm.achat(USER, seed=2))
    finally:
        calls_done.set()
        release.set()
        dispatcher.event_handlers.remove(recorder)
        await ticking

    events = [name for name in recorder.names if name != "tick"]
    first_end = recorder.names.index("LLMChatEndEvent")
    assert events == [
        "LLMChatStartEvent",
        "LLMChatStartEvent",
        "LLMChatEndEvent",
        "LLMChatEndEvent",
    ]
    assert recorder.names[:2] == ["LLMChatStartEvent", "LLMChatStartEvent"]
    assert "tick" in recorder.names[2:first_end]
    assert first.additional_kwargs["certified"] is True
    assert second.additional_kwargs["certified"] is True


# --- embeddings ------------------------------------------------------------------------------


def tiny_sentence_encoder():
    from transformers import BertConfig, BertModel

    from shared_core.encoders import SentenceEncoder

    tokenizer = make_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        pad_token_id=tokenizer.pad_token_id,
    )
    return SentenceEncoder(BertModel(config), tokenizer, name="tiny-bert", batch_size=2)


async def test_embedding_batches_match_single_texts():
    embedding = MiniLMEmbedding(encoder=tiny_sentence_encoder())
    texts = ["a cat", "the quick brown fox jumps", "bake for twenty minutes"]

    batch = embedding.get_text_embedding_batch(texts)
    single = [embedding.get_text_embedding(text) for text in texts]
    query = embedding.get_query_embedding(texts[1])
    async_batch = await embedding.aget_text_embedding_batch(texts)
    async_query = await embedding.aget_query_embedding(texts[1])

    assert [len(vector) for vector in batch] == [16, 16, 16]
    for vector, alone, async_vector in zip(batch, single, async_batch, strict=True):
        assert vector == pytest.approx(alone, abs=1e-5)
        assert async_vector == pytest.approx(vector, abs=1e-5)
    assert query == pytest.approx(batch[1], abs=1e-5)
    assert async_query == pytest.approx(query, abs=1e-5)
    assert sum(value * value for value in batch[0]) == pytest.approx(1.0, abs=1e-4)


def test_embedding_constructor_loads_nothing():
    embedding = MiniLMEmbedding(embed_batch_size=4)

    assert embedding._encoder is None
    assert embedding.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert MiniLMEmbedding.class_name() == "MiniLMEmbedding"


@pytest.mark.integration
def test_minilm_embedding_ranks_related_text():
    embedding = MiniLMEmbedding()

    cat, kitten, market = embedding.get_text_embedding_batch(
        ["A cat sleeps on the sofa.", "A kitten naps on the couch.", "Stock markets fell today."]
    )

    assert len(cat) == 384
    assert embedding.similarity(cat, kitten) > embedding.similarity(cat, market) + 0.3
