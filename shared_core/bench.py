"""`inferenceguard bench`: InferenceGuard and the baselines on the same prompts, seeds and machine.

Every method answers every prompt before the run moves to the next prompt, and the order of
the methods rotates from prompt to prompt. A change in machine speed during the run therefore
affects all methods alike, and `evaluation.speed_drift` reports how large it was. Each response
is then scored, outside the timed call, by the guiding cost model, the reward model and the
independent judge.

Outputs, under `--out`: `<name>.json` (settings, machine, metrics, targets and one record per
response, without prompt or response text), `<name>.md` (the tables) and
`<name>_reward_vs_safety.png` and `<name>_time_vs_safety.png` (one point per method).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import hashlib
import io
import json
import logging
import os
import platform
import pstats
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from tqdm.auto import tqdm

from shared_core.baselines import (
    CRITIC_METHODS,
    METHOD_NAMES,
    BaselineSettings,
    DecodingMethod,
    build_methods,
)
from shared_core.baselines.base import budget_of
from shared_core.config import GuardConfig
from shared_core.data.prompts import PromptRecord, count_by_source, load_prompts
from shared_core.evaluation import (
    PLAIN_METHOD,
    ResponseRecord,
    check_targets,
    speed_drift,
    summarize,
)
from shared_core.scoring import check_scores

if TYPE_CHECKING:
    from shared_core.critic_base import Critic
    from shared_core.engine import InferenceGuard
    from shared_core.scoring import CostModel

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("docs/benchmarks")
GUARD_METHOD_PREFIX = "inferenceguard"


@dataclass(frozen=True)
class BenchSize:
    """How many prompts of each kind, and how long the responses may be."""

    prompts_per_kind: int
    max_new_tokens: int


QUICK = BenchSize(prompts_per_kind=3, max_new_tokens=24)
"""`--quick`: a smoke-sized run of every method, a few minutes on a CPU with the default models."""

FULL = BenchSize(prompts_per_kind=50, max_new_tokens=64)
"""The full size: about 17 times the prompts and 2.7 times the tokens of `--quick`."""


# --- the run ------------------------------------------------------------------------------------


def run_benchmark(
    methods: dict[str, DecodingMethod],
    prompts: Sequence[PromptRecord],
    *,
    cost_model: CostModel,
    budget: float,
    reward_model: Any | None,
    judge: Any | None,
    seed: int = 0,
    progress: bool = True,
) -> list[ResponseRecord]:
    """Answer every prompt with every method and score the responses.

    Prompt `i` is answered by every method with the seed `seed + i`, the methods in an order
    rotated by `i`. A method that raises gets a record with `error` set, and the run goes on.

    Args:
        methods: `{name: method}`, e.g. from `baselines.build_methods`.
        prompts: The prompts, each answered as one user message.
        cost_model: The guiding cost model; it scores every returned text.
        budget: The safety budget `d` of the cost model.
        reward_model: Scores every returned text (refusals included), or `None`.
        judge: The independent judge: an object with `score(prompts, responses)` returning
            P(unsafe) per pair and a `threshold` above which a response counts as unsafe, or
            `None`.
        seed: Base seed of the requests.
        progress: Whether to show a progress bar.

    Raises:
        ValueError: If a scorer returns invalid scores.
    """
    names = list(methods)
    records: list[ResponseRecord] = []
    started = time.perf_counter()
    bar = tqdm(total=len(prompts) * len(names), desc="bench", unit="response", disable=not progress)
    for index, prompt in enumerate(prompts):
        prompt_id = hashlib.sha256(prompt.text.encode()).hexdigest()[:12]
        shift = index % len(names)
        rows: list[tuple[ResponseRecord, str]] = []
        for name in names[shift:] + names[:shift]:
            bar.set_postfix_str(f"{prompt.kind} {index}: {name}")
            call_start = time.perf_counter()
            record = ResponseRecord(
                method=name,
                prompt_index=index,
                kind=prompt.kind,
                source=prompt.source,
                prompt_id=prompt_id,
                seed=seed + index,
                seconds=0.0,
                started_at=call_start - started,
            )
            try:
                output = methods[name].generate(prompt.text, seed=seed + index)
            except Exception as error:  # one failing method must not end the run
                record.seconds = time.perf_counter() - call_start
                record.error = f"{type(error).__name__}: {error}"
                logger.exception("Method %s failed on prompt %d (%s)", name, index, prompt.kind)
                records.append(record)
                bar.update(1)
                continue
            record.seconds = time.perf_counter() - call_start
            details = output.to_dict()
            record.completion_tokens = output.completion_tokens
            record.finish_reason = output.finish_reason
            record.fallback = output.fallback
            record.certified = output.certified
            record.stats = details["stats"]
            rows.append((record, output.text))
            records.append(record)
            bar.update(1)
        _score_rows(prompt.text, rows, cost_model, reward_model, judge)
    bar.close()
    return records


def _score_rows(
    prompt: str,
    rows: list[tuple[ResponseRecord, str]],
    cost_model: CostModel,
    reward_model: Any | None,
    judge: Any | None,
) -> None:
    """Score the returned texts of one prompt with every scorer, one batch per scorer."""
    if not rows:
        return
    texts = [text for _, text in rows]
    prompts = [prompt] * len(texts)
    costs = check_scores(cost_model.score(prompts, texts), len(texts), cost_model.name)
    rewards: list[float | None] = [None] * len(texts)
    if reward_model is not None:
        rewards = list(
            check_scores(reward_model.score(prompts, texts), len(texts), reward_model.name)
        )
    verdicts: list[float | None] = [None] * len(texts)
    if judge is not None:
        verdicts = list(check_scores(judge.score(prompts, texts), len(texts), judge.name))
    for (record, _), cost, reward, verdict in zip(rows, costs, rewards, verdicts, strict=True):
        record.cost = cost
        record.reward = reward
        if judge is not None and verdict is not None:
            record.judge_score = verdict
            record.judge_unsafe = verdict > float(judge.threshold)


# --- prompts and methods ------------------------------------------------------------------------


def load_test_prompts(per_kind: int, *, seed: int = 0) -> list[PromptRecord]:
    """Return `per_kind` harmful then `per_kind` benign prompts of the test split.

    Each kind mixes its sources (see `shared_core.data.prompts.load_prompts`).
    """
    harmful = load_prompts("harmful", "test", limit=per_kind, seed=seed)
    benign = load_prompts("benign", "test", limit=per_kind, seed=seed)
    for kind, records in (("harmful", harmful), ("benign", benign)):
        if len(records) < per_kind:
            logger.warning(
                "Only %d %s test prompts exist; %d were requested.", len(records), kind, per_kind
            )
    # Alternate the kinds, so a run that is cut short still covers both.
    mixed: list[PromptRecord] = []
    for index in range(max(len(harmful), len(benign))):
        mixed.extend(group[index] for group in (harmful, benign) if index < len(group))
    return mixed


def available_methods(requested: Sequence[str] | None, has_critic: bool) -> list[str]:
    """Return the methods to run: `requested`, or every method the engine supports.

    Raises:
        ValueError: If a requested method needs a critic and there is none.
    """
    if requested:
        missing = [m for m in requested if m in CRITIC_METHODS and not has_critic]
        if missing:
            msg = (
                f"Methods {missing} need a critic, but none is loaded. Pass --critic PATH, or "
                "drop them from --methods."
            )
            raise ValueError(msg)
        return list(requested)
    names = list(METHOD_NAMES)
    if not has_critic:
        skipped = [m for m in names if m in CRITIC_METHODS]
        logger.warning("No critic loaded: skipping %s.", ", ".join(skipped))
        names = [m for m in names if m not in CRITIC_METHODS]
    return names


# --- results ------------------------------------------------------------------------------------


def build_results(
    records: Sequence[ResponseRecord],
    *,
    guard: InferenceGuard,
    config: GuardConfig,
    settings: BaselineSettings,
    prompts: Sequence[PromptRecord],
    judge: Any | None,
    command: str,
    seed: int,
    wall_seconds: float,
) -> dict[str, Any]:
    """Return the JSON document of one run: settings, machine, metrics, targets and records."""
    budget = budget_of(config, guard)
    summary = summarize(records, budget)
    methods = list(dict.fromkeys(r.method for r in records))
    guard_methods = [m for m in methods if m.startswith(GUARD_METHOD_PREFIX)]
    by_kind = {
        kind: count_by_source(p for p in prompts if p.kind == kind)
        for kind in ("harmful", "benign")
    }
    return {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(wall_seconds, 1),
        "machine": machine_info(),
        "models": {
            "base_model": guard.model_name,
            "cost_model": guard.cost_model.name,
            "budget": budget,
            "reward_model": getattr(guard.reward_model, "name", None),
            "critic": getattr(guard.critic, "name", None),
            "judge": getattr(judge, "name", None),
            "judge_threshold": None if judge is None else float(judge.threshold),
        },
        "configuration": {
            "guard": config.to_dict(),
            "baselines": asdict(settings),
            "seed": seed,
            "prompts": {"split": "test", "per_kind": by_kind},
        },
        "methods": methods,
        "summary": summary,
        "targets": check_targets(summary, guard_methods),
        "drift": speed_drift(records),
        "records": [record.to_dict() for record in records],
    }


def results_json(results: dict[str, Any]) -> str:
    """Return `results` as indented JSON with one line per record, floats to 6 digits.

    Records make up most of a run's JSON, so one compact line each keeps the file small and
    still diffable line by line.
    """
    summary = {key: value for key, value in results.items() if key != "records"}
    text = json.dumps(summary, indent=1, allow_nan=False)
    lines = [
        json.dumps(_round_floats(record), separators=(",", ":"), allow_nan=False)
        for record in results.get("records", [])
    ]
    return (
        text[: text.rindex("}")].rstrip()
        + ',\n "records": [\n  '
        + ",\n  ".join(lines)
        + "\n ]\n}\n"
    )


def _round_floats(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {key: _round_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_round_floats(item) for item in value]
    return value


def machine_info() -> dict[str, Any]:
    """Return the hardware and software the run used."""
    import transformers

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def write_outputs(results: dict[str, Any], out: Path, name: str) -> list[Path]:
    """Write `<name>.json`, `<name>.md` and the two plots into `out`; return the paths."""
    from shared_core.bench_report import markdown_report, write_plots

    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    json_path.write_text(results_json(results), encoding="utf-8")
    markdown_path = out / f"{name}.md"
    markdown_path.write_text(markdown_report(results), encoding="utf-8")
    return [json_path, markdown_path, *write_plots(results, out, name)]


# --- command line -------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of `inferenceguard bench`."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"Small run: {QUICK.prompts_per_kind} harmful and {QUICK.prompts_per_kind} benign "
        f"prompts, {QUICK.max_new_tokens} new tokens (default size: "
        f"{FULL.prompts_per_kind} per kind, {FULL.max_new_tokens} tokens).",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHOD_NAMES,
        metavar="METHOD",
        help=f"Methods to run (default: all; those needing a critic only when one is loaded). "
        f"Choices: {', '.join(METHOD_NAMES)}.",
    )
    parser.add_argument(
        "--num-prompts", type=int, help="Test-split prompts per kind (harmful, benign)."
    )
    parser.add_argument("--max-new-tokens", type=int, help="Maximum new tokens per response.")
    parser.add_argument(
        "--seed", type=int, default=0, help="Base seed of the requests (default: 0)."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"Folder for the JSON, Markdown and PNG outputs (default: {DEFAULT_OUT}).",
    )
    parser.add_argument("--name", help="File name stem of the outputs (default: quick or full).")
    parser.add_argument(
        "--critic",
        type=Path,
        help="Critic folder (default: the shipped critic of the embedded base model, if any).",
    )
    parser.add_argument("--no-critic", action="store_true", help="Run without a critic.")
    parser.add_argument(
        "--lagrange-multiplier",
        type=float,
        default=BaselineSettings.lagrange_multiplier,
        help="lambda of the Lagrangian score R - lambda * C (default: %(default)s).",
    )
    parser.add_argument(
        "--args-weight",
        type=float,
        default=BaselineSettings.args_weight,
        help="ARGS weight of the guidance score (default: %(default)s).",
    )
    parser.add_argument(
        "--args-top-k",
        type=int,
        default=BaselineSettings.args_top_k,
        help="ARGS candidate tokens per step (default: %(default)s).",
    )
    parser.add_argument(
        "--recontrol-steps",
        type=int,
        default=BaselineSettings.recontrol_steps,
        help="RE-Control Adam steps per token (default: %(default)s).",
    )
    parser.add_argument(
        "--recontrol-step-size",
        type=float,
        default=BaselineSettings.recontrol_step_size,
        help="RE-Control Adam learning rate relative to the hidden state's RMS "
        "(default: %(default)s).",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="Torch CPU threads (default: 1, so that timings do not depend on other load on the "
        "machine; raise it on a dedicated machine).",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="Run under cProfile and write <name>_profile.txt with the top functions.",
    )
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="Rewrite the Markdown page and plots of an earlier run from its JSON file, next to "
        "it, without running anything.",
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark on the embedded default models and write the outputs."""
    if args.render is not None:
        return render(args.render)
    size = QUICK if args.quick else FULL
    per_kind = args.num_prompts if args.num_prompts is not None else size.prompts_per_kind
    max_new_tokens = args.max_new_tokens or size.max_new_tokens
    name = args.name or ("quick" if args.quick else "full")
    if per_kind < 1:
        print(f"Invalid --num-prompts {per_kind}: must be at least 1.", file=sys.stderr)
        return 2
    if args.threads < 1:
        print(f"Invalid --threads {args.threads}: must be at least 1.", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)

    settings = BaselineSettings(
        lagrange_multiplier=args.lagrange_multiplier,
        args_weight=args.args_weight,
        args_top_k=args.args_top_k,
        recontrol_steps=args.recontrol_steps,
        recontrol_step_size=args.recontrol_step_size,
    )
    guard, judge = load_default_setup(
        critic_path=args.critic, use_critic=not args.no_critic, max_new_tokens=max_new_tokens
    )
    try:
        names = available_methods(args.methods, guard.critic is not None)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    if PLAIN_METHOD not in names:
        logger.warning("Plain decoding is not among the methods, so no ratios will be computed.")
    methods = build_methods(names, guard, settings)
    prompts = load_test_prompts(per_kind, seed=args.seed)
    logger.info(
        "Benchmarking %d methods on %d prompts (%s), max_new_tokens=%d",
        len(names),
        len(prompts),
        count_by_source(prompts),
        max_new_tokens,
    )

    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    records = run_benchmark(
        methods,
        prompts,
        cost_model=guard.cost_model,
        budget=guard.budget,
        reward_model=guard.reward_model,
        judge=judge,
        seed=args.seed,
        progress=not args.no_progress,
    )
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - started

    command = command_line(args)
    results = build_results(
        records,
        guard=guard,
        config=guard.config,
        settings=settings,
        prompts=prompts,
        judge=judge,
        command=command,
        seed=args.seed,
        wall_seconds=wall,
    )
    paths = write_outputs(results, args.out, name)
    if profiler is not None:
        paths.append(write_profile(profiler, args.out / f"{name}_profile.txt"))
    from shared_core.bench_report import markdown_tables

    print(markdown_tables(results))
    print(f"Wrote {', '.join(str(p) for p in paths)} in {wall:.0f} s.")
    return 0


def render(json_path: Path) -> int:
    """Rewrite `<name>.md` and the plots of the run stored in `json_path`.

    Returns:
        The exit status: 0, or 2 when the file is missing or not valid JSON.
    """
    try:
        results = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        print(f"Failed to read benchmark results {json_path}: {error}", file=sys.stderr)
        return 2
    from shared_core.bench_report import markdown_report, write_plots

    name = json_path.stem
    markdown_path = json_path.with_suffix(".md")
    markdown_path.write_text(markdown_report(results), encoding="utf-8")
    paths = [markdown_path, *write_plots(results, json_path.parent, name)]
    print(f"Wrote {', '.join(str(p) for p in paths)}.")
    return 0


def command_line(args: argparse.Namespace) -> str:
    """Return the `inferenceguard bench` command that reproduces `args`, defaults left out."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    defaults = parser.parse_args([])
    words = ["inferenceguard", "bench"]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest, None)
        if value == getattr(defaults, action.dest) or action.dest in (
            "no_progress",
            "profile",
            "render",
        ):
            continue
        option = action.option_strings[0]
        if isinstance(value, bool):
            words.append(option)
        elif isinstance(value, list):
            words += [option, *map(str, value)]
        else:
            words += [option, str(value)]
    return shlex.join(words)


def load_default_setup(
    *, critic_path: Path | None, use_critic: bool, max_new_tokens: int
) -> tuple[InferenceGuard, Any]:
    """Load the embedded defaults: base model, cost model, reward proxy, critic and judge.

    Without `critic_path`, the critic shipped for the base model is used when there is one.
    """
    from shared_core.critic import load_critic
    from shared_core.defaults import load_default_guard, load_default_judge
    from shared_core.engine import InferenceGuard

    config = GuardConfig(max_new_tokens=max_new_tokens)
    if not use_critic or critic_path is None:
        guard = load_default_guard(config, critic="default" if use_critic else None)
    else:
        plain = load_default_guard(config, critic=None)
        guard = InferenceGuard(
            plain.model,
            plain.tokenizer,
            plain.cost_model,
            plain.reward_model,
            critic=cast("Critic", load_critic(critic_path, plain.model)),
            config=config,
            model_name=plain.model_name,
        )
    return guard, load_default_judge()


def write_profile(profiler: cProfile.Profile, path: Path, limit: int = 40) -> Path:
    """Write the `limit` functions with the most cumulative and own time to `path`."""
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).strip_dirs()
    stats.sort_stats("cumulative").print_stats(limit)
    stats.sort_stats("tottime").print_stats(limit)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stream.getvalue(), encoding="utf-8")
    return path
