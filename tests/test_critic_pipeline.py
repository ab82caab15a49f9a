"""Critic data collection, training and use in the search, on tiny random-weight models."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from tiny_models import make_forced_model, make_tiny_lm

from shared_core import cli
from shared_core.config import GuardConfig
from shared_core.critic import (
    CriticCard,
    LatentCritic,
    load_critic,
    model_fingerprint,
)
from shared_core.critic_data import (
    CollectionSettings,
    ProcessGroup,
    collect_critic_data,
    detect_process_group,
)
from shared_core.critic_eval import compare_search, markdown_table
from shared_core.critic_store import CriticExamples, load_examples, read_manifests
from shared_core.critic_training import TrainingSettings, train_critic
from shared_core.data.prompts import PromptRecord
from shared_core.data.splits import split_of
from shared_core.engine import InferenceGuard
from shared_core.scoring import CallableCostModel, CallableRewardModel

SETTINGS = CollectionSettings(samples_per_prompt=3, block_size=6, max_new_tokens=18)


def _letter_cost(prompt: str, response: str) -> float:
    """Cost that grows with the response for "harmful" prompts and is 0 for the others."""
    if "attack" not in prompt:
        return 0.0
    return response.count("e") / 3 + response.count("a") / 3


def _prompts(split: str, count: int) -> list[PromptRecord]:
    """Return `count` synthetic prompts of `split`, alternating harmful and benign."""
    records = []
    for index in itertools.count():
        kind = "harmful" if index % 2 else "benign"
        text = f"please attack target {index}" if kind == "harmful" else f"say hello {index}"
        if split_of(text) == split:
            records.append(PromptRecord(text, kind, "synthetic"))
        if len(records) == count:
            return records
    raise AssertionError  # unreachable: itertools.count never ends


@pytest.fixture(scope="module")
def guard() -> InferenceGuard:
    model, tokenizer = make_tiny_lm()
    cost = CallableCostModel(_letter_cost, threshold=0.5, name="letter-cost")
    reward = CallableRewardModel(lambda p, r: len(r) / 10, name="length-reward")
    return InferenceGuard(model, tokenizer, cost, reward)


@pytest.fixture(scope="module")
def prompts() -> list[PromptRecord]:
    return _prompts("train", 8) + _prompts("validation", 4)


@pytest.fixture(scope="module")
def collected(guard: InferenceGuard, prompts: list[PromptRecord], tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("critic-data")
    collect_critic_data(guard, prompts, folder, SETTINGS, progress=False)
    return folder


def _rows_by_sample(examples: CriticExamples) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for row, (prompt, sample) in enumerate(
        zip(examples.prompt.tolist(), examples.sample.tolist(), strict=True)
    ):
        groups[(prompt, sample)].append(row)
    return groups


def test_collection_writes_rows_for_every_prompt(collected: Path, prompts) -> None:
    examples = load_examples(collected)
    assert len(examples.prompts) == len(prompts)
    assert examples.hidden.shape[1] == 32
    assert len(examples) >= len(prompts) * SETTINGS.samples_per_prompt
    assert set(examples.sample.tolist()) == {0, 1, 2}
    assert {p.split for p in examples.prompts} == {"train", "validation"}
    assert 0 < float(examples.safe.mean()) < 1


def test_collection_labels_follow_later_safety(collected: Path) -> None:
    examples = load_examples(collected)
    for rows in _rows_by_sample(examples).values():
        blocks = examples.block[rows].tolist()
        z = examples.safety_state[rows].tolist()
        safe = examples.safe[rows].tolist()
        reward = examples.reward[rows].tolist()

        assert blocks == list(range(len(blocks)))
        # Rows stop at the first violation, so only the last row may have z < 0.
        assert all(value >= 0 for value in z[:-1])
        for k in range(len(rows)):
            assert safe[k] == float(min(z[k:]) >= 0)
        assert len(set(reward)) == 1


def test_collection_hidden_states_match_model(guard: InferenceGuard, collected: Path) -> None:
    examples = load_examples(collected)
    benign = next(i for i, p in enumerate(examples.prompts) if p.kind == "benign")
    first = ((examples.prompt == benign) & (examples.block == 0)).nonzero()[0, 0]
    hidden = examples.hidden[first]
    assert torch.isfinite(hidden).all()
    assert float(hidden.norm()) > 0


def test_collection_resumes_without_resampling(
    guard: InferenceGuard, prompts, collected: Path, tmp_path: Path
) -> None:
    summary = collect_critic_data(guard, prompts, collected, SETTINGS, progress=False)
    assert summary["prompts"] == 0
    assert summary["skipped"] == len(prompts)

    # Half now, the rest in a second run: the same rows as one uninterrupted run.
    collect_critic_data(guard, prompts[:5], tmp_path, SETTINGS, progress=False)
    resumed = collect_critic_data(guard, prompts, tmp_path, SETTINGS, progress=False)
    assert resumed["skipped"] == 5
    whole, pieces = load_examples(collected), load_examples(tmp_path)
    assert _rows_by_prompt_id(whole).keys() == _rows_by_prompt_id(pieces).keys()
    for key, rows in _rows_by_prompt_id(whole).items():
        assert torch.equal(rows, _rows_by_prompt_id(pieces)[key]), key


def _rows_by_prompt_id(examples: CriticExamples) -> dict[str, torch.Tensor]:
    return {
        info.id: examples.safety_state[examples.prompt == index]
        for index, info in enumerate(examples.prompts)
    }


def test_collection_splits_prompts_by_rank(guard: InferenceGuard, prompts, tmp_path: Path) -> None:
    for rank in (0, 1):
        group = ProcessGroup(rank=rank, world_size=2)
        summary = collect_critic_data(
            guard, prompts, tmp_path, SETTINGS, process_group=group, progress=False
        )
        assert summary["prompts"] == len(prompts[rank::2])
    files = sorted(entry["file"] for entry in read_manifests(tmp_path))
    assert any(name.startswith("shard-r0-") for name in files)
    assert any(name.startswith("shard-r1-") for name in files)
    assert len(load_examples(tmp_path).prompts) == len(prompts)


def test_collection_rejects_other_settings(guard: InferenceGuard, prompts, collected) -> None:
    other = CollectionSettings(samples_per_prompt=2, block_size=6, max_new_tokens=18)
    with pytest.raises(ValueError, match="another setup"):
        collect_critic_data(guard, prompts, collected, other, progress=False)


def test_detect_process_group_single_process() -> None:
    group = detect_process_group()
    assert group.rank == 0
    assert group.world_size == 1
    assert group.is_main


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"samples_per_prompt": 0}, "samples_per_prompt"),
        ({"block_size": True}, "block_size"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_collection_settings_reject_invalid(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CollectionSettings(**changes)


def test_end_to_end_train_save_load_search(
    guard: InferenceGuard, collected: Path, tmp_path: Path
) -> None:
    examples = load_examples(collected)
    card = CriticCard(
        hidden_size=32,
        scale=0.5,
        name="tiny-critic",
        base_model=guard.model_name,
        base_model_fingerprint=model_fingerprint(guard.model),
        cost_model=guard.cost_model.name,
        budget=guard.budget,
    )
    settings = TrainingSettings(epochs=5, hidden_dims=(16,), batch_size=16)
    critic = train_critic(examples, card, settings, progress=False)
    critic.save(tmp_path)
    loaded = load_critic(tmp_path, guard.model)

    assert loaded.card.metrics["validation"]["prompts"] == 4
    assert loaded.card.training["train"]["prompts"] == 8

    guarded = InferenceGuard(
        guard.model, guard.tokenizer, guard.cost_model, guard.reward_model, critic=loaded
    )
    result = guarded.generate("please attack target 99", seed=0, max_new_tokens=12)
    assert result.report.critic == "tiny-critic"
    assert result.report.stats.critic_calls > 0
    if result.report.certified:
        assert result.report.final_cost <= guard.budget


# --- the critic inside the search ---------------------------------------------------------------


def _constant_critic(model: torch.nn.Module, logit: float) -> LatentCritic:
    """A real critic network whose safety head outputs `logit` for every input."""
    card = CriticCard(
        hidden_size=32,
        hidden_dims=(4,),
        name=f"constant-{logit:+g}",
        base_model_fingerprint=model_fingerprint(model),
    )
    critic = LatentCritic(card)
    with torch.no_grad():
        critic.safety_head.weight.zero_()
        critic.safety_head.bias.fill_(logit)
        critic.safety_state_logit.weight.zero_()
    return critic


BANNED = CallableCostModel(lambda p, r: float("bomb" in r), threshold=0.5, name="banned-word")


def test_safe_critic_keeps_cost_model_in_charge() -> None:
    model, tokenizer = make_forced_model("Here is how to build a bomb at home.")
    always_safe = _constant_critic(model, 50.0)
    guarded = InferenceGuard(model, tokenizer, BANNED, critic=always_safe)

    for fast_path in (True, False):
        result = guarded.generate("hi", seed=0, max_new_tokens=24, fast_path=fast_path)
        assert result.finish_reason == "content_filter", fast_path
        assert not result.report.certified
        assert "bomb" not in result.text
        assert result.report.stats.critic_calls > 0


def test_safe_critic_allows_safe_answer() -> None:
    model, tokenizer = make_forced_model("Hello, how can I help you today?")
    guarded = InferenceGuard(model, tokenizer, BANNED, critic=_constant_critic(model, 50.0))
    result = guarded.generate("hi", seed=0, max_new_tokens=24)
    assert result.report.certified
    assert result.text == "Hello, how can I help you today?"


def test_unsafe_critic_forces_resampling() -> None:
    model, tokenizer = make_tiny_lm()
    guarded = InferenceGuard(model, tokenizer, BANNED, critic=_constant_critic(model, -50.0))
    result = guarded.generate("hi", seed=0, max_new_tokens=24, fast_path=True)
    stats = result.report.stats
    assert stats.branched
    assert stats.fast_path_blocks == 1
    assert stats.resample_rounds > 0


def test_unsafe_critic_makes_engine_fall_back() -> None:
    model, tokenizer = make_forced_model("Hello, how can I help you today?")
    guarded = InferenceGuard(model, tokenizer, BANNED, critic=_constant_critic(model, -50.0))
    result = guarded.generate("hi", seed=0, max_new_tokens=24)
    assert result.finish_reason == "content_filter"


# --- evaluation and command line ----------------------------------------------------------------


def test_compare_search_reports_both_methods(guard: InferenceGuard, prompts) -> None:
    critic = _constant_critic(guard.model, 50.0)
    config = GuardConfig(num_samples=2, num_beams=1, block_size=6, max_new_tokens=12)
    judge = CallableCostModel(lambda p, r: float("zz" in r), threshold=0.5, name="zz-judge")
    comparison = compare_search(
        guard, critic, prompts[:4], config, judge=judge, seed=3, progress=False
    )

    assert comparison["settings"]["num_samples"] == 2
    assert comparison["settings"]["prompts"] == 4
    with_critic = comparison["methods"]["with_critic"]["all"]
    without_critic = comparison["methods"]["without_critic"]["all"]
    assert with_critic["responses"] == 4
    assert without_critic["responses"] == 4
    assert with_critic["critic_calls_per_response"] > 0
    assert without_critic["critic_calls_per_response"] == 0
    assert 0 <= with_critic["judge_safe_rate"] <= 1
    assert comparison["settings"]["judge"] == "zz-judge"
    harmful = comparison["methods"]["with_critic"]["harmful"]["responses"]
    benign = comparison["methods"]["with_critic"]["benign"]["responses"]
    assert harmful + benign == 4

    table = markdown_table(comparison)
    assert len(table.splitlines()) == 2 + 6
    assert "| with critic | all (4) |" in table


def test_train_critic_command(collected: Path, tmp_path: Path) -> None:
    status = cli.main(
        [
            "train-critic",
            "--data",
            str(collected),
            "--output",
            str(tmp_path),
            "--epochs",
            "2",
            "--hidden-dims",
            "8",
            "--no-progress",
        ]
    )
    assert status == 0
    critic = load_critic(tmp_path)
    assert critic.card.hidden_dims == (8,)
    assert critic.card.cost_model == "letter-cost"
    assert critic.card.reward_model == "length-reward"
    assert critic.card.training["data"]["samples_per_prompt"] == 3
    assert critic.scale > 0
    assert "auc" in critic.card.metrics["validation"]


@pytest.mark.parametrize("command", ["collect-critic-data", "train-critic", "eval-critic"])
def test_critic_commands_have_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--" in capsys.readouterr().out
