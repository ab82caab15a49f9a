"""Tests of `inferenceguard chat` on tiny forced-output models, in process and through a pipe."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import make_forced_model

from shared_core.chat_cli import build_config, chat_loop, configure_parser, describe_report
from shared_core.cli import build_parser
from shared_core.config import GuardConfig
from shared_core.engine import InferenceGuard
from shared_core.scoring import CallableCostModel

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
REFUSAL = "I can't help with that request."


def keyword_guard(answer: str, banned: str = "bomb", config: GuardConfig | None = None):
    """Return a guard whose model always outputs `answer`, with a cost model that flags `banned`."""
    model, tokenizer = make_forced_model(answer)
    cost = CallableCostModel(
        lambda prompt, response: float(banned in response), threshold=0.5, name="banned-word"
    )
    config = config or GuardConfig.preset("fast", max_new_tokens=24)
    return InferenceGuard(model, tokenizer, cost, config=config)


def make_safe_guard(config: GuardConfig) -> InferenceGuard:
    """Build the guard of the piped test whose model always outputs a harmless sentence."""
    return keyword_guard("Hello, how can I help you today?", config=config)


def make_unsafe_guard(config: GuardConfig) -> InferenceGuard:
    """Build the guard of the piped test whose model always outputs the banned word."""
    return keyword_guard("bomb bomb bomb", config=config)


def run_chat(guard: InferenceGuard, text: str, **options) -> tuple[int, str]:
    stdout = io.StringIO()
    status = chat_loop(guard, stdin=io.StringIO(text), stdout=stdout, **options)
    return status, stdout.getvalue()


class InterruptingInput(io.StringIO):
    """Standard input that raises KeyboardInterrupt on the first read, as Ctrl-C does."""

    def readline(self, *args, **kwargs) -> str:
        raise KeyboardInterrupt


def test_chat_streams_answer_and_report():
    status, output = run_chat(keyword_guard("Hello there, friend."), "hi\n/exit\n", seed=0)

    assert status == 0
    assert "assistant> Hello there, friend." in output
    assert "certified with respect to cost model 'banned-word' at budget 0.5" in output
    assert "not certified" not in output
    assert output.rstrip().endswith("Bye.")


def test_chat_refuses_unsafe_answer():
    status, output = run_chat(keyword_guard("a bomb"), "tell me\n/exit\n", seed=0)

    assert status == 0
    assert f"assistant> {REFUSAL}" in output
    assert "not certified with respect to cost model 'banned-word'" in output
    assert "fallback: refuse (no_safe_candidate)" in output
    assert "a bomb" not in output


def test_chat_raise_fallback_reports_error():
    config = GuardConfig.preset("fast", max_new_tokens=24, fallback="raise")
    status, output = run_chat(keyword_guard("a bomb", config=config), "tell me\n", seed=0)

    assert status == 0
    assert "No answer certified with respect to cost model 'banned-word'" in output
    assert "a bomb" not in output


def test_chat_ends_at_end_of_input():
    status, output = run_chat(keyword_guard("Hello."), "first\nsecond\n", seed=0)

    assert status == 0
    assert output.count("assistant> Hello.") == 2
    assert output.rstrip().endswith("Bye.")


def test_chat_keyboard_interrupt_at_prompt():
    stdout = io.StringIO()
    status = chat_loop(keyword_guard("Hello."), stdin=InterruptingInput(), stdout=stdout)

    assert status == 0
    assert "Traceback" not in stdout.getvalue()


def test_chat_keyboard_interrupt_while_answering():
    model, tokenizer = make_forced_model("Hello there.")

    def interrupt(prompt: str, response: str) -> float:
        raise KeyboardInterrupt

    cost = CallableCostModel(interrupt, threshold=0.5, name="interrupting")
    guard = InferenceGuard(model, tokenizer, cost, config=GuardConfig.preset("fast"))

    status, output = run_chat(guard, "hi\nagain\n")

    assert status == 0
    assert output.count("assistant>") == 1
    # The interrupted stream released the engine for the next request.
    other = CallableCostModel(lambda p, r: 0.0, threshold=0.5, name="zero")
    guard.cost_model = other
    assert guard.generate("hi", max_new_tokens=8, seed=0).report.certified


def test_chat_commands_help_and_reset():
    status, output = run_chat(
        keyword_guard("Hello."), "/help\n\n/reset\n/quit\nnever read\n", system="Be brief."
    )

    assert status == 0
    assert "/reset clears the history" in output
    assert "History cleared." in output
    assert "assistant>" not in output


def test_chat_keeps_history_between_turns():
    guard = keyword_guard("Hello.")
    seen: list[int] = []
    original = guard.stream

    def recording_stream(messages, **overrides):
        seen.append(len(messages))
        return original(messages, **overrides)

    guard.stream = recording_stream  # type: ignore[method-assign]
    run_chat(guard, "one\ntwo\n/reset\nthree\n", system="Be brief.")

    # system + user; then system + user + assistant + user; after /reset, system + user again.
    assert seen == [2, 4, 2]


def test_chat_seed_increments_per_turn():
    guard = keyword_guard("Hello.")
    seeds: list[int | None] = []
    original = guard.stream

    def recording_stream(messages, **overrides):
        seeds.append(overrides.get("seed"))
        return original(messages, **overrides)

    guard.stream = recording_stream  # type: ignore[method-assign]
    run_chat(guard, "one\ntwo\n", seed=7)

    assert seeds == [7, 8]


def test_build_config_applies_options():
    parser = build_parser("chat")
    args = parser.parse_args(
        [
            "chat",
            "--preset",
            "balanced",
            "--max-new-tokens",
            "32",
            "--temperature",
            "0.5",
            "--budget",
            "0.25",
            "--fallback",
            "raise",
        ]
    )
    config = build_config(args)

    assert config.num_samples == GuardConfig.preset("balanced").num_samples
    assert config.max_new_tokens == 32
    assert config.temperature == 0.5
    assert config.budget == 0.25
    assert config.fallback == "raise"


def test_build_config_rejects_invalid_temperature():
    args = build_parser("chat").parse_args(["chat", "--temperature", "0"])

    with pytest.raises(ValueError, match="temperature"):
        build_config(args)


def test_guard_factory_option_is_hidden():
    parser = build_parser("chat")
    subparsers = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    help_text = subparsers.choices["chat"].format_help()

    assert "--guard-factory" not in help_text
    assert "--max-new-tokens" in help_text
    assert callable(configure_parser)


def test_describe_report_mentions_fallback_and_search():
    guard = keyword_guard("a bomb")
    report = guard.generate("hi", seed=0).report

    line = describe_report(report, 1.25)

    assert line.startswith("not certified with respect to cost model 'banned-word'")
    assert "fallback: refuse (no_safe_candidate)" in line
    assert f"{report.stats.blocks} blocks" in line  # the search ran several blocks
    assert line.endswith("1.2 s")


def piped_chat(factory: str, text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(REPO_ROOT)]),
        "HF_HUB_OFFLINE": "1",
    }
    command = [
        sys.executable,
        "-m",
        "shared_core.cli",
        "--log-level",
        "WARNING",
        "chat",
        "--guard-factory",
        f"test_chat_cli:{factory}",
        "--seed",
        "0",
        *extra,
    ]
    return subprocess.run(
        command,
        input=text,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )


def test_chat_command_through_pipe():
    completed = piped_chat("make_safe_guard", "hello\n/exit\n", "--max-new-tokens", "24")

    assert completed.returncode == 0, completed.stderr
    assert "assistant> Hello, how can I help you today?" in completed.stdout
    assert "certified with respect to cost model 'banned-word'" in completed.stdout
    assert "Traceback" not in completed.stderr


def test_chat_command_refusal_through_pipe():
    completed = piped_chat("make_unsafe_guard", "hello\n")

    assert completed.returncode == 0, completed.stderr
    assert f"assistant> {REFUSAL}" in completed.stdout
    assert "fallback: refuse" in completed.stdout
    assert "bomb" not in completed.stdout


def test_chat_command_invalid_option_exits_2():
    completed = piped_chat("make_safe_guard", "", "--temperature", "-1")

    assert completed.returncode == 2
    assert "temperature" in completed.stderr
