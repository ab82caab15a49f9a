"""`inferenceguard chat`: an interactive terminal chat through the guard.

Each turn streams the committed text (text that passed the cost check, see `GuardChunk`) as it
arrives and then prints the guarantee report of the answer. `/exit`, end of input (Ctrl-D) and
Ctrl-C end the session with exit status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from shared_core.config import FALLBACK_POLICIES, GuardConfig
from shared_core.result import GuaranteeReport, SafetyViolationError

if TYPE_CHECKING:
    from shared_core.engine import InferenceGuard

PRESETS = ("fast", "balanced", "paper")
EXIT_COMMANDS = frozenset({"/exit", "/quit"})
HELP_TEXT = (
    "Commands: /exit or /quit ends the chat (so do Ctrl-D and Ctrl-C), /reset clears the "
    "history, /help shows this text."
)

GuardFactory = Callable[[GuardConfig], "InferenceGuard"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the chat options to `parser`."""
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="fast",
        help="Search preset (default: fast, one beam of four candidates with the fast path).",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=128,
        help="Maximum number of new tokens per response (default: 128).",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="Sampling temperature, > 0 (default: the preset's, 0.7).",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="Safety budget d in cost model units (default: the cost model's threshold).",
    )
    parser.add_argument(
        "--fallback",
        choices=FALLBACK_POLICIES,
        default="refuse",
        help="What to return when no certified response exists (default: refuse).",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="Seed of the first turn; later turns use seed+1, seed+2, ... (default: random).",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="Torch CPU threads (default: torch's choice, usually one per core). Use 1 when "
        "other processes keep the cores busy.",
    )
    parser.add_argument(
        "--system",
        default=None,
        metavar="TEXT",
        help="System message that starts the conversation (default: none).",
    )
    # Test hook: `module:function` that takes a GuardConfig and returns an InferenceGuard, so
    # tests can pipe a conversation into the real command with a tiny model.
    parser.add_argument("--guard-factory", default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Run the chat on stdin and stdout and return the exit status."""
    try:
        config = build_config(args)
    except ValueError as error:
        print(f"inferenceguard chat: {error}", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print(
                f"inferenceguard chat: invalid --threads {args.threads}: use 1 or more.",
                file=sys.stderr,
            )
            return 2
        import torch

        torch.set_num_threads(args.threads)

    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (gives input() line editing and history)

    print("Loading the model, cost model and critic ...", flush=True)
    try:
        guard = load_guard(config, args.guard_factory)
    except KeyboardInterrupt:
        print()
        return 0
    return chat_loop(
        guard,
        stdin=sys.stdin,
        stdout=sys.stdout,
        system=args.system,
        seed=args.seed,
    )


def build_config(args: argparse.Namespace) -> GuardConfig:
    """Return the preset named by `args.preset` with the options the user set.

    Raises:
        ValueError: If an option has an invalid value (the message names it).
    """
    changes: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "fallback": args.fallback}
    if args.temperature is not None:
        changes["temperature"] = args.temperature
    if args.budget is not None:
        changes["budget"] = args.budget
    return GuardConfig.preset(args.preset, **changes)


def load_guard(config: GuardConfig, factory_path: str | None = None) -> InferenceGuard:
    """Return the default guard with `config`, or the guard built by `factory_path`.

    Args:
        config: Settings of the guard.
        factory_path: `"module:function"`; the function takes the config and returns an
            `InferenceGuard`. `None` loads the embedded defaults.

    Raises:
        ValueError: If `factory_path` is not of the form `module:function`.
    """
    if factory_path is None:
        from shared_core.defaults import load_default_guard

        return load_default_guard(config=config)

    module_name, _, function_name = factory_path.partition(":")
    if not module_name or not function_name:
        msg = f"Invalid guard factory {factory_path!r}: use the form 'module:function'."
        raise ValueError(msg)
    factory: GuardFactory = getattr(importlib.import_module(module_name), function_name)
    return factory(config)


def chat_loop(
    guard: InferenceGuard,
    *,
    stdin: TextIO,
    stdout: TextIO,
    system: str | None = None,
    seed: int | None = None,
) -> int:
    """Chat with `guard` until `/exit`, end of input or Ctrl-C, and return 0.

    Args:
        guard: The engine that generates the responses.
        stdin: Where user turns are read, one per line.
        stdout: Where answers and reports are written.
        system: Optional system message at the start of the history.
        seed: Seed of the first turn; turn `i` uses `seed + i`. `None` draws fresh seeds.
    """
    history: list[dict[str, Any]] = []
    if system:
        history.append({"role": "system", "content": system})
    stdout.write(
        f"Chatting with {guard.model_name}, guarded by cost model {guard.cost_model.name!r} "
        f"at budget {guard.budget:.4g}.\n{HELP_TEXT}\n"
    )
    turn = 0
    while True:
        try:
            line = _read_turn(stdin, stdout)
        except KeyboardInterrupt:
            stdout.write("\n")
            return 0
        if line is None or line.strip() in EXIT_COMMANDS:
            stdout.write("Bye.\n")
            return 0

        text = line.strip()
        if not text:
            continue
        if text == "/help":
            stdout.write(HELP_TEXT + "\n")
            continue
        if text == "/reset":
            history = history[:1] if system else []
            stdout.write("History cleared.\n")
            continue

        history.append({"role": "user", "content": text})
        overrides = {} if seed is None else {"seed": seed + turn}
        try:
            answer = answer_turn(guard, history, stdout, **overrides)
        except KeyboardInterrupt:
            stdout.write("\n")
            return 0
        history.append({"role": "assistant", "content": answer})
        turn += 1


def answer_turn(
    guard: InferenceGuard, history: list[dict[str, Any]], stdout: TextIO, **overrides: Any
) -> str:
    """Stream one answer to `history` onto `stdout`, then its report; return the answer text.

    With `fallback="raise"`, a `SafetyViolationError` is caught: its committed partial text
    stays on screen, the report is printed, and that partial text is returned.
    """
    stdout.write("assistant> ")
    stdout.flush()
    parts: list[str] = []
    started = time.perf_counter()
    stream = guard.stream(history, **overrides)
    try:
        for chunk in stream:
            if chunk.text:
                parts.append(chunk.text)
                stdout.write(chunk.text)
                stdout.flush()
            if chunk.is_last and chunk.report is not None:
                seconds = time.perf_counter() - started
                stdout.write(f"\n  [{describe_report(chunk.report, seconds)}]\n")
    except SafetyViolationError as error:
        seconds = time.perf_counter() - started
        stdout.write(f"\n  [{error}; {describe_report(error.report, seconds)}]\n")
        return error.partial_text
    finally:
        if hasattr(stream, "close"):  # releases the engine when the stream ends early
            stream.close()
    return "".join(parts)


def describe_report(report: GuaranteeReport, seconds: float | None = None) -> str:
    """Summarise a guarantee report in one line: the claim, the fallback and the search size."""
    parts = [report.claim]
    if report.fallback is not None:
        reason = f" ({report.fallback_reason})" if report.fallback_reason else ""
        parts.append(f"fallback: {report.fallback}{reason}")
    if report.error:
        parts.append(f"error: {report.error}")
    stats = report.stats
    search = f"{_count(stats.blocks, 'block')}, {_count(stats.candidates_sampled, 'candidate')}"
    if stats.resample_rounds:
        search += f", {_count(stats.resample_rounds, 'resample round')}"
    if stats.branched:
        search += ", branched into the full search"
    parts.append(search)
    if seconds is not None:
        parts.append(f"{seconds:.1f} s")
    return "; ".join(parts)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _read_turn(stdin: TextIO, stdout: TextIO) -> str | None:
    """Return the next user line without its newline, or `None` at end of input."""
    if stdin is sys.stdin and stdout is sys.stdout and stdin.isatty():
        try:
            return input("you> ")  # line editing, through readline where it is installed
        except EOFError:
            stdout.write("\n")
            return None
    stdout.write("you> ")
    stdout.flush()
    line = stdin.readline()
    if not line:
        stdout.write("\n")
        return None
    line = line.rstrip("\n")
    stdout.write(line + "\n")  # echo piped input, so the transcript reads like a terminal's
    return line
