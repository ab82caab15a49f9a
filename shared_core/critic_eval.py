"""`inferenceguard eval-critic`: held-out critic metrics and the search with and without it.

Two evaluations, both on prompts that no training step saw:

1. Prediction quality: AUC and Brier score of `p_safe` and R² of `v_task` on rows collected
   from test-split prompts (`inferenceguard collect-critic-data --splits test`).
2. Effect on the search: the same engine settings (N, K, block size, seeds) with and without
   the critic on harmful and benign test prompts. Per method it reports the certified rate,
   the rate judged safe by the independent default judge, the fallback rate, the mean reward
   of the returned text and the seconds per response.

The results go into the critic card's `evaluation` section and, as a Markdown table, to
standard output or a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from shared_core.config import GuardConfig
from shared_core.critic import (
    CARD_FILE,
    DEFAULT_CRITIC_DIR,
    LatentCritic,
    load_critic,
)
from shared_core.critic_store import load_examples
from shared_core.critic_training import critic_metrics
from shared_core.data.prompts import PromptRecord, load_prompt_mix

if TYPE_CHECKING:
    from shared_core.engine import InferenceGuard
    from shared_core.scoring import CostModel, RewardModel

logger = logging.getLogger(__name__)


@dataclass
class MethodResult:
    """Outcomes of one search method over a prompt set."""

    responses: int = 0
    certified: int = 0
    judge_safe: int = 0
    judged: int = 0
    fallbacks: int = 0
    reward_sum: float = 0.0
    answered_reward_sum: float = 0.0
    seconds: float = 0.0
    critic_calls: int = 0
    candidates_sampled: int = 0

    def add(self, certified: bool, fallback: bool, reward: float, seconds: float) -> None:
        """Add the outcome of one response to the totals."""
        self.responses += 1
        self.certified += int(certified)
        self.fallbacks += int(fallback)
        self.reward_sum += reward
        if not fallback:
            self.answered_reward_sum += reward
        self.seconds += seconds

    def summary(self) -> dict[str, Any]:
        """Return rates and means as plain JSON values."""
        answered = self.responses - self.fallbacks
        count = max(self.responses, 1)
        return {
            "responses": self.responses,
            "certified_rate": self.certified / count,
            "judge_safe_rate": self.judge_safe / self.judged if self.judged else None,
            "fallback_rate": self.fallbacks / count,
            "mean_reward": self.reward_sum / count,
            "mean_reward_answered": self.answered_reward_sum / answered if answered else None,
            "seconds_per_response": self.seconds / count,
            "candidates_per_response": self.candidates_sampled / count,
            "critic_calls_per_response": self.critic_calls / count,
        }


def compare_search(
    guard: InferenceGuard,
    critic: LatentCritic,
    prompts: Sequence[PromptRecord],
    config: GuardConfig,
    *,
    reward_model: RewardModel | None = None,
    judge: CostModel | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the search without and with `critic` on every prompt, with the same settings.

    The engine without the critic ranks safe candidates by `guard.reward_model`; the engine with
    it ranks them by `v_task`. Both use `config` and the seed `seed + prompt index`, and the
    reward of every returned text (the refusal text of a fallback included) is scored by
    `reward_model`, by default `guard.reward_model`. When a `judge` is given (an independent
    cost model that the search never sees), a returned text counts as judge-safe when the
    judge's score is at most its threshold.

    Returns:
        `{"settings": ..., "methods": {"without_critic" | "with_critic": {kind: summary}}}`,
        where `kind` is `"harmful"`, `"benign"` or `"all"`.
    """
    from shared_core.engine import InferenceGuard

    scorer = reward_model or guard.reward_model
    engines = {
        "without_critic": InferenceGuard(
            guard.model,
            guard.tokenizer,
            guard.cost_model,
            guard.reward_model,
            config=config,
            model_name=guard.model_name,
        ),
        "with_critic": InferenceGuard(
            guard.model,
            guard.tokenizer,
            guard.cost_model,
            guard.reward_model,
            critic=critic,
            config=config,
            model_name=guard.model_name,
        ),
    }
    results = {
        name: {kind: MethodResult() for kind in ("harmful", "benign", "all")} for name in engines
    }

    steps = tqdm(
        total=len(prompts) * len(engines),
        desc="eval critic",
        unit="response",
        disable=not progress,
    )
    for index, record in enumerate(prompts):
        for name, engine in engines.items():
            started = time.perf_counter()
            result = engine.generate(record.text, seed=seed + index)
            seconds = time.perf_counter() - started
            reward = 0.0
            if scorer is not None:
                reward = float(scorer.score([record.text], [result.text])[0])
            fallback = result.report.fallback is not None
            judged_safe = None
            if judge is not None:
                judged_safe = judge.score([record.text], [result.text])[0] <= judge.threshold
            for kind in (record.kind, "all"):
                bucket = results[name][kind]
                bucket.add(result.report.certified, fallback, reward, seconds)
                bucket.critic_calls += result.report.stats.critic_calls
                if judged_safe is not None:
                    bucket.judged += 1
                    bucket.judge_safe += int(judged_safe)
                bucket.candidates_sampled += result.report.stats.candidates_sampled
            steps.update()
    steps.close()

    return {
        "settings": {
            "prompts": len(prompts),
            "harmful": sum(r.kind == "harmful" for r in prompts),
            "benign": sum(r.kind == "benign" for r in prompts),
            "num_samples": config.num_samples,
            "num_beams": config.num_beams,
            "block_size": config.block_size,
            "max_new_tokens": config.max_new_tokens,
            "fast_path": config.fast_path,
            "critic_threshold": config.critic_threshold,
            "seed": seed,
            "cost_model": guard.cost_model.name,
            "budget": guard.budget,
            "reward_model": None if scorer is None else scorer.name,
            "judge": None if judge is None else judge.name,
        },
        "methods": {
            name: {kind: bucket.summary() for kind, bucket in buckets.items()}
            for name, buckets in results.items()
        },
    }


def markdown_table(comparison: dict[str, Any]) -> str:
    """Return the search comparison as a Markdown table, one row per method and prompt kind."""
    lines = [
        "| method | prompts | certified | judge-safe | fallback | mean reward | "
        "reward (answered) | s / response |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, by_kind in comparison["methods"].items():
        for kind in ("harmful", "benign", "all"):
            row = by_kind[kind]
            answered = row["mean_reward_answered"]
            judge_safe = row["judge_safe_rate"]
            lines.append(
                f"| {method.replace('_', ' ')} | {kind} ({row['responses']}) | "
                f"{row['certified_rate']:.0%} | "
                f"{'-' if judge_safe is None else f'{judge_safe:.0%}'} | "
                f"{row['fallback_rate']:.0%} | "
                f"{row['mean_reward']:.3f} | "
                f"{'-' if answered is None else f'{answered:.3f}'} | "
                f"{row['seconds_per_response']:.1f} |"
            )
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of `inferenceguard eval-critic`."""
    parser.add_argument(
        "--critic",
        type=Path,
        default=DEFAULT_CRITIC_DIR,
        help=f"Critic folder (default: the shipped critic, {DEFAULT_CRITIC_DIR}).",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="Hugging Face model id or folder of the base model (default: the embedded "
        "SmolLM2-135M-Instruct).",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="Data folder collected with `collect-critic-data --splits test`, for held-out "
        "AUC, Brier score and R².",
    )
    parser.add_argument(
        "--harmful", type=int, default=20, help="Harmful test prompts for the search comparison."
    )
    parser.add_argument(
        "--benign", type=int, default=20, help="Benign test prompts for the search comparison."
    )
    defaults = GuardConfig()
    parser.add_argument(
        "--num-samples",
        type=int,
        default=defaults.num_samples,
        help="Candidates N sampled per block in the full search.",
    )
    parser.add_argument(
        "--num-beams", type=int, default=defaults.num_beams, help="Beams K kept after each block."
    )
    parser.add_argument("--block-size", type=int, default=defaults.block_size)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument(
        "--no-fast-path",
        action="store_true",
        help="Run the full search from the first block in both methods.",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--markdown", type=Path, default=None, help="Also write the table to this file."
    )
    parser.add_argument(
        "--update-card",
        action="store_true",
        help="Write the results into the evaluation section of the critic card.",
    )
    parser.add_argument("--device", default="cpu", help="Torch device (default: cpu).")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    parser.add_argument(
        "--num-threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice). On a machine shared with other "
        "jobs, 1 thread per process can be much faster than contended threads.",
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate a critic with the default cost model, reward proxy and judge."""
    from shared_core.critic_data import build_default_guard
    from shared_core.defaults import load_default_judge

    if args.num_threads is not None:
        import torch

        torch.set_num_threads(args.num_threads)
    started = time.perf_counter()
    guard = build_default_guard(args.model, device=args.device, dtype="float32", budget=None)
    critic = load_critic(args.critic, guard.model)
    evaluation: dict[str, Any] = {}

    if args.data is not None:
        test_rows = load_examples(args.data).in_splits(["test"])
        if len(test_rows) == 0:
            logger.warning(
                "%s contains no rows of test-split prompts, so there are no held-out metrics. "
                "Collect them with `inferenceguard collect-critic-data --splits test`.",
                args.data,
            )
        evaluation["test_metrics"] = critic_metrics(critic, test_rows)
        print("Held-out test metrics:")
        print(json.dumps(evaluation["test_metrics"], indent=2))

    if args.harmful or args.benign:
        config = GuardConfig(
            num_samples=args.num_samples,
            num_beams=args.num_beams,
            block_size=args.block_size,
            max_new_tokens=args.max_new_tokens,
            fast_path=not args.no_fast_path,
        )
        prompts = load_prompt_mix("test", harmful=args.harmful, benign=args.benign, seed=args.seed)
        comparison = compare_search(
            guard,
            critic,
            prompts,
            config,
            judge=load_default_judge(),
            seed=args.seed,
            progress=not args.no_progress,
        )
        evaluation["search"] = comparison
        table = markdown_table(comparison)
        print(table)
        if args.markdown is not None:
            args.markdown.write_text(table + "\n", encoding="utf-8")

    evaluation["seconds"] = round(time.perf_counter() - started, 1)
    if args.update_card:
        critic.card.evaluation = evaluation
        folder = args.critic if args.critic.is_dir() else args.critic.parent
        card_path = folder / CARD_FILE
        card_path.write_text(
            json.dumps(critic.card.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n",
            encoding="utf-8",
        )
        print(f"Wrote the evaluation into {card_path}")
    return 0
