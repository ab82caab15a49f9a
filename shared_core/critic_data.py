"""`inferenceguard collect-critic-data`: sample responses and record critic training rows.

For each prompt, `samples_per_prompt` responses are sampled from the base model as one batch
with the search's own block sampling (`LanguageModel.sample_block`) and its temperature and
top-p. The hidden state at each block boundary comes from the forward pass that sampled the
block. After every block the cost model scores each response prefix, which gives the safety
state `z_k = d - C(x, y_k)`. As in the search, a state with `z < 0` is absorbing: the cost model
is not called again for that response and its `z` stays at the violating value.

Each block boundary of each response becomes one row: the hidden state `h_k`, `z_k`, the label
`safe = min_{j >= k} z_j >= 0` and the reward `R(x, y)` of the whole response. Rows after a
response's first violation are not stored, because a violated candidate stays unsafe whatever
the critic outputs (its `p_safe` is 0 by definition). The response is still sampled to its
end, so its reward is the reward of a full response.

Rows are written in shards (see `shared_core.critic_store`). An interrupted run resumes with the
same command and skips the prompts already on disk. Under `accelerate launch` or `torchrun`,
each process takes every `world_size`-th prompt and writes its own shards and manifest.
NOTE: the multi-process path was run with `torchrun` on CPUs only, never on GPUs.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from shared_core.config import GuardConfig
from shared_core.critic import hidden_size_of, model_fingerprint
from shared_core.critic_store import (
    PromptInfo,
    ShardWriter,
    finished_prompt_ids,
    prompt_id,
    write_setup,
)
from shared_core.data.prompts import PromptRecord, count_by_source, load_prompt_mix
from shared_core.data.splits import TEST_SHARE, VALIDATION_SHARE
from shared_core.lm import LanguageModel
from shared_core.logits import sampling_processors
from shared_core.scoring import CostModel, RewardModel, check_scores
from shared_core.stopping import StopStrings

if TYPE_CHECKING:
    from shared_core.engine import InferenceGuard

logger = logging.getLogger(__name__)

SPLIT_SHARES = {
    "train": 1 - VALIDATION_SHARE - TEST_SHARE,
    "validation": VALIDATION_SHARE,
    "test": TEST_SHARE,
}


@dataclass(frozen=True)
class CollectionSettings:
    """Sampling settings of a critic data collection.

    Temperature and top-p default to the search's defaults, because the critic estimates the
    outcome of continuations sampled the way the search samples them.
    """

    samples_per_prompt: int = 4
    """Responses sampled per prompt, as one batch."""

    block_size: int = 16
    """Tokens per block. One row is recorded at every block boundary."""

    max_new_tokens: int = 96
    temperature: float = GuardConfig.temperature
    top_p: float = GuardConfig.top_p
    layer: int = -1
    """Index into the model's `hidden_states` tuple (`-1` is the last layer)."""

    seed: int = 0
    """Base seed. Each prompt's generator is seeded from it and the prompt's id, so a prompt
    gets the same samples whichever process or resumed run collects it."""

    prompts_per_shard: int = 8

    def __post_init__(self) -> None:
        for name in ("samples_per_prompt", "block_size", "max_new_tokens", "prompts_per_shard"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"Invalid {name}={value!r}: must be an integer >= 1."
                raise ValueError(msg)
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            msg = f"Invalid temperature={self.temperature!r}: must be a finite number > 0."
            raise ValueError(msg)
        if not 0 < self.top_p <= 1:
            msg = f"Invalid top_p={self.top_p!r}: must be in (0, 1]."
            raise ValueError(msg)


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the data-parallel collection processes."""

    rank: int = 0
    world_size: int = 1
    device: str | None = None
    """The device `accelerate` assigned to this process, or `None` outside `accelerate`."""

    @property
    def is_main(self) -> bool:
        """Whether this is the process that logs summaries and shows the progress bar."""
        return self.rank == 0


def detect_process_group() -> ProcessGroup:
    """Return the rank, world size and device of this process.

    Uses `accelerate.PartialState` when `accelerate` is installed, else the `RANK` and
    `WORLD_SIZE` environment variables that `torchrun` and `accelerate launch` set, else a
    single process.
    """
    env_rank = int(os.environ.get("RANK", "0"))
    env_world_size = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        from accelerate import PartialState
    except ImportError:
        return ProcessGroup(rank=env_rank, world_size=env_world_size)

    # PartialState detects several CPU processes only with cpu=True (accelerate 1.15).
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes != env_world_size and env_world_size > 1:
        logger.warning(
            "accelerate reports %d process(es) but WORLD_SIZE=%d; using RANK=%d of WORLD_SIZE",
            state.num_processes,
            env_world_size,
            env_rank,
        )
        return ProcessGroup(rank=env_rank, world_size=env_world_size)
    device = str(state.device) if state.num_processes > 1 else None
    return ProcessGroup(rank=state.process_index, world_size=state.num_processes, device=device)


# --- sampling one prompt ------------------------------------------------------------------------


def sample_prompt_rows(
    lm: LanguageModel,
    prompt_ids: Sequence[int],
    prompt_text: str,
    *,
    cost_model: CostModel,
    reward_model: RewardModel | None,
    budget: float,
    settings: CollectionSettings,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Sample `settings.samples_per_prompt` responses to one prompt and return its rows.

    Returns:
        The tensors of `shared_core.critic_store.ROW_TENSORS` with `prompt` set to 0.

    Raises:
        ValueError: If the cost or reward model returns an invalid score.
    """
    samples = settings.samples_per_prompt
    processors = sampling_processors(
        temperature=settings.temperature,
        top_p=settings.top_p,
        suppress_ids=lm.suppressed_token_ids,
    )
    state = lm.prefill(prompt_ids, hidden_layer=settings.layer).repeat(samples)
    live = list(range(samples))  # sample index of each row of `state`
    tokens: list[list[int]] = [[] for _ in range(samples)]
    texts = [""] * samples
    violated = [False] * samples
    boundaries: list[tuple[int, int, torch.Tensor, float]] = []  # (sample, block, h, z)
    z_values: list[list[float]] = [[] for _ in range(samples)]

    block = 0
    while live:
        num_steps = min(settings.block_size, settings.max_new_tokens - state.position)
        sample = lm.sample_block(
            state,
            [tokens[i] for i in live],
            num_steps=num_steps,
            max_new_tokens=settings.max_new_tokens,
            processors=processors,
            generator=generator,
            stop_strings=StopStrings(),
            hidden_layer=settings.layer,
        )
        assert sample.state.hidden is not None
        for row, index in enumerate(live):
            tokens[index] = [*tokens[index], *sample.new_tokens[row]]
            texts[index] = sample.texts[row]

        # Only responses that are not violated yet are scored and recorded.
        open_rows = [row for row, index in enumerate(live) if not violated[index]]
        costs = check_scores(
            cost_model.score([prompt_text] * len(open_rows), [sample.texts[r] for r in open_rows]),
            len(open_rows),
            cost_model.name,
        )
        for row, cost in zip(open_rows, costs, strict=True):
            index = live[row]
            z = budget - cost
            z_values[index].append(z)
            boundaries.append((index, block, sample.state.hidden[row].detach().cpu(), z))
            violated[index] = z < 0

        keep = [row for row, reason in enumerate(sample.finish_reasons) if reason is None]
        live = [live[row] for row in keep]
        state = sample.state.select(keep) if keep else sample.state
        block += 1

    rewards = [0.0] * samples
    if reward_model is not None:
        rewards = check_scores(
            reward_model.score([prompt_text] * samples, texts), samples, reward_model.name
        )
    return _label_rows(boundaries, z_values, rewards, lm_hidden_size=hidden_size_of(lm.model))


def _label_rows(
    boundaries: list[tuple[int, int, torch.Tensor, float]],
    z_values: list[list[float]],
    rewards: list[float],
    *,
    lm_hidden_size: int,
) -> dict[str, torch.Tensor]:
    # safe at boundary k of a sample = the minimum of its z from k to the end is >= 0.
    later_min = [_suffix_minimum(values) for values in z_values]
    position = [0] * len(z_values)
    safe, reward = [], []
    for index, _, _, _ in boundaries:
        safe.append(float(later_min[index][position[index]] >= 0))
        reward.append(rewards[index])
        position[index] += 1
    count = len(boundaries)
    hidden = (
        torch.stack([h for _, _, h, _ in boundaries])
        if boundaries
        else torch.empty(0, lm_hidden_size)
    )
    return {
        "hidden": hidden,
        "safety_state": torch.tensor([z for *_, z in boundaries], dtype=torch.float32),
        "safe": torch.tensor(safe, dtype=torch.float32),
        "reward": torch.tensor(reward, dtype=torch.float32),
        "prompt": torch.zeros(count, dtype=torch.int64),
        "sample": torch.tensor([i for i, *_ in boundaries], dtype=torch.int64),
        "block": torch.tensor([b for _, b, _, _ in boundaries], dtype=torch.int64),
    }


def _suffix_minimum(values: list[float]) -> list[float]:
    minimum, result = math.inf, [0.0] * len(values)
    for position in range(len(values) - 1, -1, -1):
        minimum = min(minimum, values[position])
        result[position] = minimum
    return result


# --- a whole collection -------------------------------------------------------------------------


def collection_setup(
    guard: InferenceGuard, settings: CollectionSettings, budget: float
) -> dict[str, Any]:
    """Return the setup recorded in `collection.json` for `guard` and `settings`."""
    reward_model = guard.reward_model
    return {
        "base_model": guard.model_name,
        "base_model_fingerprint": model_fingerprint(guard.model),
        "hidden_size": hidden_size_of(guard.model),
        "layer": settings.layer,
        "cost_model": guard.cost_model.name,
        "cost_model_threshold": float(guard.cost_model.threshold),
        "budget": budget,
        "reward_model": None if reward_model is None else reward_model.name,
        **{k: v for k, v in asdict(settings).items() if k not in ("layer", "prompts_per_shard")},
    }


def collect_critic_data(
    guard: InferenceGuard,
    prompts: Sequence[PromptRecord],
    output: str | Path,
    settings: CollectionSettings | None = None,
    *,
    process_group: ProcessGroup | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Collect critic training rows for `prompts` into the data folder `output`.

    Prompts already on disk are skipped, so the same call resumes an interrupted run. The
    search's budget (`guard.budget`) is the budget of the safety state.

    Args:
        guard: The engine whose base model, cost model and reward model are used.
        prompts: The prompts; each process takes every `world_size`-th one.
        output: The data folder.
        settings: Sampling settings.
        process_group: This process's rank and world size. Defaults to a single process.
        progress: Show a progress bar (on the main process only).

    Returns:
        A summary of this process's work: prompts done and skipped, rows, seconds.

    Raises:
        ValueError: If `output` contains data collected with another setup.
    """
    settings = settings or CollectionSettings()
    group = process_group or ProcessGroup()
    folder = Path(output)
    budget = float(guard.budget)
    write_setup(folder, collection_setup(guard, settings, budget))
    lm = LanguageModel(guard.model, guard.tokenizer)
    if guard.reward_model is None:
        logger.warning("No reward model: every row gets reward 0, so v_task learns nothing")

    mine = list(prompts)[group.rank :: group.world_size]
    done = finished_prompt_ids(folder)
    todo = [p for p in mine if prompt_id(p.text) not in done]
    logger.info(
        "Process %d/%d: %d prompts, %d already collected, %d to sample",
        group.rank,
        group.world_size,
        len(mine),
        len(mine) - len(todo),
        len(todo),
    )

    writer = ShardWriter(folder, rank=group.rank)
    pending: list[PromptInfo] = []
    pending_rows: list[dict[str, torch.Tensor]] = []
    rows_written = 0
    started = time.perf_counter()
    bar = tqdm(
        todo, desc="collect critic data", unit="prompt", disable=not (progress and group.is_main)
    )
    for record in bar:
        identifier = prompt_id(record.text)
        generator = torch.Generator(device=lm.device).manual_seed(
            _prompt_seed(settings.seed, identifier)
        )
        prompt_ids = guard.encode_prompt(record.text)
        rows = sample_prompt_rows(
            lm,
            prompt_ids,
            record.text,
            cost_model=guard.cost_model,
            reward_model=guard.reward_model,
            budget=budget,
            settings=settings,
            generator=generator,
        )
        rows["prompt"] = torch.full_like(rows["prompt"], len(pending))
        pending.append(PromptInfo(identifier, record.split, record.kind, record.source))
        pending_rows.append(rows)
        if len(pending) >= settings.prompts_per_shard:
            rows_written += _flush(writer, pending, pending_rows)
            pending, pending_rows = [], []
    if pending:
        rows_written += _flush(writer, pending, pending_rows)

    summary = {
        "rank": group.rank,
        "prompts": len(todo),
        "skipped": len(mine) - len(todo),
        "rows": rows_written,
        "seconds": round(time.perf_counter() - started, 1),
    }
    logger.info("Process %d finished: %s", group.rank, summary)
    return summary


def _flush(
    writer: ShardWriter, prompts: list[PromptInfo], rows: list[dict[str, torch.Tensor]]
) -> int:
    joined = {name: torch.cat([r[name] for r in rows]) for name in rows[0]}
    writer.write(prompts, joined)
    return int(joined["safe"].shape[0])


def _prompt_seed(seed: int, identifier: str) -> int:
    digest = hashlib.sha256(f"{seed}:{identifier}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def select_prompts(
    splits: Sequence[str], *, harmful: int, benign: int, seed: int = 0
) -> list[PromptRecord]:
    """Return `harmful` and `benign` prompts spread over `splits` in proportion to their size.

    The default sources are used (Do-Not-Answer only for the test split).
    """
    total_share = sum(SPLIT_SHARES[s] for s in splits)
    records: list[PromptRecord] = []
    for split in splits:
        share = SPLIT_SHARES[split] / total_share
        records += load_prompt_mix(
            split,  # type: ignore[arg-type]
            harmful=round(harmful * share),
            benign=round(benign * share),
            seed=seed,
        )
    return records


# --- command line -------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of `inferenceguard collect-critic-data`."""
    defaults = CollectionSettings()
    parser.add_argument(
        "--output", type=Path, required=True, help="Data folder; rerun the command to resume."
    )
    parser.add_argument(
        "--model",
        default=None,
        help="Hugging Face model id or folder of the base model (default: the embedded "
        "SmolLM2-135M-Instruct).",
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        default=["train", "validation"],
        choices=["train", "validation", "test"],
        help="Prompt splits to collect (default: train validation).",
    )
    parser.add_argument(
        "--harmful", type=int, default=150, help="Harmful prompts over all splits (default: 150)."
    )
    parser.add_argument(
        "--benign", type=int, default=150, help="Benign prompts over all splits (default: 150)."
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=defaults.samples_per_prompt,
        help=f"Responses sampled per prompt (default: {defaults.samples_per_prompt}).",
    )
    parser.add_argument(
        "--block-size",
        type=int,
        default=defaults.block_size,
        help=f"Tokens per block (default: {defaults.block_size}).",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=defaults.max_new_tokens,
        help=f"Maximum response length in tokens (default: {defaults.max_new_tokens}).",
    )
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument(
        "--layer",
        type=int,
        default=defaults.layer,
        help="Index into the model's hidden_states (default: -1, the last layer).",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="Safety budget d (default: the cost model's threshold).",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--prompts-per-shard", type=int, default=defaults.prompts_per_shard)
    parser.add_argument(
        "--device",
        default=None,
        help="Torch device (default: the one accelerate assigns, else cuda when available, "
        "else cpu).",
    )
    parser.add_argument(
        "--dtype", default="float32", help="Base model weight dtype (default: float32)."
    )
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    parser.add_argument(
        "--num-threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice). On a machine shared with other "
        "jobs, 1 thread per process can be much faster than contended threads.",
    )


def run(args: argparse.Namespace) -> int:
    """Collect critic data with the default cost and reward models."""
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    group = detect_process_group()
    device = args.device or group.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = CollectionSettings(
        samples_per_prompt=args.samples,
        block_size=args.block_size,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        layer=args.layer,
        seed=args.seed,
        prompts_per_shard=args.prompts_per_shard,
    )
    guard = build_default_guard(args.model, device=device, dtype=args.dtype, budget=args.budget)
    prompts = select_prompts(args.splits, harmful=args.harmful, benign=args.benign, seed=args.seed)
    if group.is_main:
        logger.info("Collecting %d prompts: %s", len(prompts), count_by_source(prompts))
    summary = collect_critic_data(
        guard, prompts, args.output, settings, process_group=group, progress=not args.no_progress
    )
    print(
        f"Process {group.rank}: {summary['prompts']} prompts sampled, {summary['skipped']} "
        f"skipped, {summary['rows']} rows in {summary['seconds']} s -> {args.output}"
    )
    return 0


def build_default_guard(
    model_name: str | None, *, device: str, dtype: str, budget: float | None
) -> InferenceGuard:
    """Return an engine on the given or embedded base model with the default cost and reward."""
    from shared_core.defaults import (
        load_base_model,
        load_default_cost_model,
        load_default_reward_model,
    )
    from shared_core.engine import InferenceGuard

    if model_name is None:
        model, tokenizer = load_base_model(device=device, dtype=dtype)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_name)
        model = AutoModelForCausalLM.from_pretrained(model_name, dtype=dtype, device_map=device)
        model.eval()
    config = GuardConfig() if budget is None else GuardConfig(budget=budget)
    return InferenceGuard(
        model,
        tokenizer,
        load_default_cost_model(),
        load_default_reward_model(),
        config=config,
    )
