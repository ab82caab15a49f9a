"""Tests of `inferenceguard demo`: prompt selection, what is withheld, and both adapter parts.

The parts run on a tiny model whose output is forced, with a cost model that flags one word, so
each test can tell in advance which responses are unsafe. Harmful prompts here are stand-in
strings, never rows of a data set.
"""

from __future__ import annotations

import io

import pytest
from tiny_models import ForcedLlamaForCausalLM, make_model, make_tokenizer

from shared_core.config import GuardConfig
from shared_core.demo import (
    FULL,
    QUICK,
    DemoPrompt,
    load_documents,
    plain_decode,
    print_summary,
    report_from_dict,
    run_langchain,
    run_llamaindex,
    select_prompts,
)
from shared_core.engine import InferenceGuard
from shared_core.scoring import CallableCostModel

HARMFUL_MARKER = "STAND-IN HARMFUL REQUEST 7f3a"
UNSAFE_OUTPUT = "Hello, a bomb here."
SAFE_OUTPUT = "Hello, how can I help you today?"


def forced_guard(
    output: str, *, max_new_tokens: int = 24, context_window: int = 4096
) -> InferenceGuard:
    """Return a guard over a tiny model that always outputs `output`, flagging "bomb".

    The context window is large enough for the query engine's prompt with retrieved
    documents, which the tiny tokenizer splits into many tokens.
    """
    tokenizer = make_tokenizer()
    base = make_model(tokenizer, max_position_embeddings=context_window)
    model = ForcedLlamaForCausalLM(base.config)
    model.load_state_dict(base.state_dict())
    model.generation_config = base.generation_config
    model.script = tokenizer.encode(output, add_special_tokens=False)
    model.prompt_length = 0
    model.name_or_path = "tiny-forced-llama"
    cost = CallableCostModel(
        lambda prompt, response: float("bomb" in response), threshold=0.5, name="banned-word"
    )
    config = GuardConfig.preset("fast", max_new_tokens=max_new_tokens, seed=0)
    return InferenceGuard(model.eval(), tokenizer, cost, config=config)


HARMFUL = DemoPrompt(HARMFUL_MARKER, "harmful", "advbench", 3)
BENIGN = DemoPrompt("How do I cool a burn?", "benign", "truthfulqa", 5)


def test_harmful_label_withholds_text():
    assert HARMFUL.label == "AdvBench #3 (harmful prompt, text withheld)"
    assert HARMFUL_MARKER not in HARMFUL.label


def test_benign_label_names_source():
    assert BENIGN.label == "TruthfulQA #5 (benign prompt)"
    assert DemoPrompt("q", "benign", "demo_docs", None).label == "bundled documents (benign prompt)"


def test_langchain_part_withholds_harmful_text():
    guard = forced_guard(UNSAFE_OUTPUT)
    out = io.StringIO()

    (answer,) = run_langchain(guard, [HARMFUL], out=out, seed=0)
    printed = out.getvalue()

    assert HARMFUL_MARKER not in printed
    assert "bomb" not in printed
    assert "AdvBench #3 (harmful prompt, text withheld)" in printed
    assert f"(text withheld, a harmful prompt: {len(UNSAFE_OUTPUT)} characters)" in printed
    assert "UNSAFE according to cost model 'banned-word'" in printed
    assert answer.plain_text == UNSAFE_OUTPUT
    assert answer.plain_unsafe
    assert not answer.report.certified
    assert answer.report.fallback == "refuse"
    assert answer.guard_text == "I can't help with that request."


def test_langchain_part_shows_benign_text():
    guard = forced_guard(SAFE_OUTPUT)
    out = io.StringIO()

    (answer,) = run_langchain(guard, [BENIGN], out=out, seed=0)
    printed = out.getvalue()

    assert "How do I cool a burn?" in printed
    assert printed.count(SAFE_OUTPUT) == 2  # the guarded and the plain response
    assert "certified with respect to cost model 'banned-word' at budget 0.5" in printed
    assert "safe according to cost model 'banned-word'" in printed
    assert answer.report.certified
    assert answer.report.final_cost == 0.0
    assert answer.guard_text == SAFE_OUTPUT


def test_benign_prompt_unsafe_plain_text_withheld():
    guard = forced_guard(UNSAFE_OUTPUT)
    out = io.StringIO()

    (answer,) = run_langchain(guard, [BENIGN], out=out, seed=0)

    assert "bomb" not in out.getvalue()
    assert "(text withheld, flagged by the cost model:" in out.getvalue()
    assert not answer.plain_text_shown


def word_judge(word: str) -> CallableCostModel:
    """Return an independent judge that flags any response containing `word`."""
    return CallableCostModel(
        lambda prompt, response: float(word in response), threshold=0.5, name="keyword-judge"
    )


def test_judge_flag_withholds_certified_answer():
    guard = forced_guard(SAFE_OUTPUT)
    out = io.StringIO()

    (answer,) = run_langchain(guard, [HARMFUL], out=out, seed=0, judge=word_judge("Hello"))
    printed = out.getvalue()

    assert answer.report.certified
    assert answer.guard_judge_unsafe
    assert not answer.guard_text_shown
    assert "Hello" not in printed
    assert "the independent judge flags the answer:" in " ".join(printed.split())
    assert "judge 'keyword-judge': UNSAFE (1 > 0.5)" in " ".join(printed.split())


def test_judge_flag_ignored_for_benign_prompt():
    guard = forced_guard(SAFE_OUTPUT)
    out = io.StringIO()

    (answer,) = run_langchain(guard, [BENIGN], out=out, seed=0, judge=word_judge("Hello"))

    assert answer.guard_judge_unsafe
    assert answer.guard_text_shown
    assert answer.plain_text_shown
    assert out.getvalue().count(SAFE_OUTPUT) == 2


def test_harmful_certified_answer_needs_judge():
    guard = forced_guard(SAFE_OUTPUT)

    (without_judge,) = run_langchain(guard, [HARMFUL], out=io.StringIO(), seed=0)
    out = io.StringIO()
    (with_judge,) = run_langchain(guard, [HARMFUL], out=out, seed=0, judge=word_judge("bomb"))

    assert without_judge.report.certified
    assert not without_judge.guard_text_shown
    assert with_judge.guard_text_shown
    assert f"InferenceGuard  {SAFE_OUTPUT}" in out.getvalue()
    assert "(text withheld, a harmful prompt:" in out.getvalue()  # the plain response
    assert HARMFUL_MARKER not in out.getvalue()


def test_refusal_shown_without_judge():
    guard = forced_guard(UNSAFE_OUTPUT)

    (answer,) = run_langchain(guard, [HARMFUL], out=io.StringIO(), seed=0)

    assert answer.refusal
    assert answer.guard_text_shown


def test_plain_decode_matches_cost_model():
    guard = forced_guard(UNSAFE_OUTPUT)

    text, cost = plain_decode(guard, [{"role": "user", "content": "hi"}], seed=0)

    assert text == UNSAFE_OUTPUT
    assert cost == 1.0


def test_plain_decode_uses_guard_token_limit():
    guard = forced_guard(SAFE_OUTPUT, max_new_tokens=3)

    text, _ = plain_decode(guard, [{"role": "user", "content": "hi"}], seed=0)

    assert text
    assert len(guard.tokenizer.encode(text, add_special_tokens=False)) <= 3
    assert SAFE_OUTPUT.startswith(text)


def test_report_from_dict_round_trip():
    guard = forced_guard(SAFE_OUTPUT)
    report = guard.generate("hi").report

    rebuilt = report_from_dict(report.to_dict())

    assert rebuilt.to_dict() == report.to_dict()
    assert rebuilt.claim == report.claim


def test_summary_counts_per_adapter_and_kind():
    guard = forced_guard(UNSAFE_OUTPUT)
    out = io.StringIO()
    answers = run_langchain(guard, [HARMFUL, BENIGN], out=io.StringIO(), seed=0)

    print_summary(out, answers, seconds=12.0)
    lines = out.getvalue().splitlines()

    harmful_row = next(line for line in lines if "LangChain chain" in line and "harmful" in line)
    # prompts, certified, fallback, judge flags (no judge here), plain unsafe
    assert harmful_row.split()[3:8] == ["1", "0", "1", "n/a", "1"]
    assert "budget 0.5" in lines[1]
    assert lines[-1] == "Finished in 12 s."


def test_demo_sizes():
    assert QUICK.harmful >= 1
    assert QUICK.benign >= 1
    assert QUICK.max_new_tokens < FULL.max_new_tokens
    assert FULL.document_question


def test_select_prompts_disjoint_test_split():
    from shared_core.data.prompts import read_source
    from shared_core.data.splits import split_of

    langchain, llamaindex = select_prompts(FULL, seed=0)

    assert [p.kind for p in langchain] == ["harmful"] * FULL.harmful + ["benign"] * FULL.benign
    assert llamaindex[-1].source == "demo_docs"
    dataset_prompts = [*langchain, *llamaindex[:-1]]
    assert len({p.text for p in dataset_prompts}) == len(dataset_prompts)
    for prompt in dataset_prompts:
        assert split_of(prompt.text) == "test", prompt.label
        assert read_source(prompt.source)[prompt.index] == prompt.text, prompt.label


def test_bundled_documents_load():
    documents = load_documents()

    assert len(documents) >= 3
    assert {d.metadata["file_name"] for d in documents} >= {"first_aid_basics.md"}
    assert all(len(d.text) > 500 for d in documents)


@pytest.mark.integration
def test_llamaindex_part_on_bundled_documents():
    """Runs the query engine with the embedded MiniLM embedding, hence `integration`."""
    guard = forced_guard(SAFE_OUTPUT)
    question = DemoPrompt("How long should a burn be cooled?", "benign", "demo_docs", None)
    out = io.StringIO()

    answers = run_llamaindex(guard, [HARMFUL, question], out=out, seed=0)
    printed = out.getvalue()

    assert [a.report.certified for a in answers] == [True, True]
    assert HARMFUL_MARKER not in printed
    assert "How long should a burn be cooled?" in printed
    # Without a judge the certified answer to the harmful prompt is withheld too.
    assert printed.count(SAFE_OUTPUT) == 2


def test_recorder_captures_query_engine_messages():
    """The plain model gets these messages, so they must hold the retrieved documents."""
    from llama_index.core import SummaryIndex

    from llamaindex_inferenceguard import InferenceGuardLLM
    from shared_core.demo import _record_llamaindex_calls

    guard = forced_guard(SAFE_OUTPUT, context_window=32768)
    engine = SummaryIndex.from_documents(load_documents()).as_query_engine(
        llm=InferenceGuardLLM(guard=guard)
    )

    with _record_llamaindex_calls() as recorder:
        engine.query("How long should a burn be cooled?")

    assert len(recorder.reports) == 1
    assert recorder.reports[0]["certified"] is True
    user_text = recorder.messages[0][-1]["content"]
    assert "20 minutes" in user_text
    assert "How long should a burn be cooled?" in user_text


def test_recorder_detaches_after_block():
    from llama_index.core.instrumentation import get_dispatcher

    from shared_core.demo import _record_llamaindex_calls

    before = list(get_dispatcher().event_handlers)
    with _record_llamaindex_calls():
        assert len(get_dispatcher().event_handlers) == len(before) + 1

    assert get_dispatcher().event_handlers == before
