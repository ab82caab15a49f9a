"""`inferenceguard bench` end to end on tiny models: records, JSON, Markdown and PNG outputs."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from conftest import keyword_cost_model
from tiny_models import make_forced_model

from shared_core import bench
from shared_core.baselines import METHOD_NAMES, BaselineSettings, DecodingMethod, build_methods
from shared_core.config import GuardConfig
from shared_core.critic import CriticCard, LatentCritic
from shared_core.data.prompts import PromptRecord
from shared_core.engine import InferenceGuard
from shared_core.scoring import CallableCostModel, CallableRewardModel

SMALL = GuardConfig(max_new_tokens=16, block_size=8, num_samples=4, num_beams=2)
FORCED_TEXT = "zebra quartz fjord"
PROMPTS = [
    PromptRecord("first harmful stand-in", "harmful", "source_a"),
    PromptRecord("first benign stand-in", "benign", "source_b"),
    PromptRecord("second harmful stand-in", "harmful", "source_a"),
    PromptRecord("second benign stand-in", "benign", "source_b"),
]


def _judge() -> CallableCostModel:
    return CallableCostModel(lambda p, r: float("quartz" in r), threshold=0.5, name="judge")


def _reward() -> CallableRewardModel:
    return CallableRewardModel(lambda p, r: float(len(r)), name="length")


@pytest.fixture
def forced_guard():
    model, tokenizer = make_forced_model(FORCED_TEXT)
    torch.manual_seed(0)
    critic = LatentCritic(CriticCard(hidden_size=32, hidden_dims=(16,)))
    return InferenceGuard(
        model, tokenizer, keyword_cost_model(["zebra"]), _reward(), critic=critic, config=SMALL
    )


@pytest.fixture
def tiny_guard(tiny_lm):
    model, tokenizer = tiny_lm
    torch.manual_seed(0)
    critic = LatentCritic(CriticCard(hidden_size=32, hidden_dims=(16,)))
    return InferenceGuard(
        model, tokenizer, keyword_cost_model(["the"]), _reward(), critic=critic, config=SMALL
    )


def _run(guard, names, prompts=PROMPTS, judge=None):
    methods = build_methods(names, guard)
    return bench.run_benchmark(
        methods,
        prompts,
        cost_model=guard.cost_model,
        budget=guard.budget,
        reward_model=guard.reward_model,
        judge=judge,
        seed=10,
        progress=False,
    )


# --- the run --------------------------------------------------------------------------------------


def test_run_records_every_method_and_prompt(tiny_guard):
    names = ["plain", "filter_after", "inferenceguard_no_critic"]
    records = _run(tiny_guard, names, judge=_judge())

    assert len(records) == len(names) * len(PROMPTS)
    assert {(r.method, r.prompt_index) for r in records} == {
        (name, index) for name in names for index in range(len(PROMPTS))
    }
    assert all(r.seed == 10 + r.prompt_index for r in records)
    assert all(r.cost is not None and r.reward is not None for r in records)
    assert all(r.judge_unsafe is not None for r in records)


def test_run_rotates_method_order(tiny_guard):
    names = ["plain", "filter_after", "best_of_n_augmented"]
    records = _run(tiny_guard, names)
    firsts = []
    for index in range(3):
        rows = sorted((r for r in records if r.prompt_index == index), key=lambda r: r.started_at)
        firsts.append(rows[0].method)
    assert firsts == names


def test_run_scores_returned_text(forced_guard):
    records = _run(forced_guard, ["plain", "filter_after"], judge=_judge())
    plain = [r for r in records if r.method == "plain"]
    filtered = [r for r in records if r.method == "filter_after"]

    assert all(r.cost == 1.0 and r.judge_unsafe for r in plain)
    assert all(r.reward == len(FORCED_TEXT) for r in plain)
    assert all(r.fallback and r.cost == 0.0 and not r.judge_unsafe for r in filtered)


def test_run_continues_after_method_error(tiny_guard):
    class Broken(DecodingMethod):
        name = "broken"

        def _decode(self, prompt, generator, stats):
            raise RuntimeError("decoder exploded")

    methods = {"plain": build_methods(["plain"], tiny_guard)["plain"], "broken": Broken(tiny_guard)}
    records = bench.run_benchmark(
        methods,
        PROMPTS[:2],
        cost_model=tiny_guard.cost_model,
        budget=tiny_guard.budget,
        reward_model=None,
        judge=None,
        progress=False,
    )
    broken = [r for r in records if r.method == "broken"]
    assert len(broken) == 2
    assert all(r.error == "RuntimeError: decoder exploded" for r in broken)
    assert all(r.cost is None for r in broken)
    assert all(r.error is None for r in records if r.method == "plain")


def test_available_methods_without_critic():
    names = bench.available_methods(None, has_critic=False)
    assert "re_control" not in names
    assert "inferenceguard_critic" not in names
    assert "inferenceguard_fast_path" in names


def test_available_methods_all_with_critic():
    assert bench.available_methods(None, has_critic=True) == list(METHOD_NAMES)


def test_available_methods_rejects_critic_method_without_critic():
    with pytest.raises(ValueError, match="need a critic"):
        bench.available_methods(["plain", "re_control"], has_critic=False)


# --- outputs --------------------------------------------------------------------------------------


def test_outputs_written_without_text(forced_guard, tmp_path):
    names = list(METHOD_NAMES)
    records = _run(forced_guard, names, judge=_judge())
    results = bench.build_results(
        records,
        guard=forced_guard,
        config=forced_guard.config,
        settings=BaselineSettings(),
        prompts=PROMPTS,
        judge=_judge(),
        command="inferenceguard bench --test",
        seed=10,
        wall_seconds=1.0,
    )
    paths = bench.write_outputs(results, tmp_path, "tiny")

    assert [p.name for p in paths] == [
        "tiny.json",
        "tiny.md",
        "tiny_reward_vs_safety.png",
        "tiny_time_vs_safety.png",
    ]
    for path in paths[2:]:
        assert path.read_bytes().startswith(b"\x89PNG")

    text = (tmp_path / "tiny.json").read_text() + (tmp_path / "tiny.md").read_text()
    assert FORCED_TEXT not in text
    assert "zebra" not in text
    assert all(prompt.text not in text for prompt in PROMPTS)


def test_json_document_contents(forced_guard, tmp_path):
    records = _run(forced_guard, ["plain", "inferenceguard_no_critic"], judge=_judge())
    results = bench.build_results(
        records,
        guard=forced_guard,
        config=forced_guard.config,
        settings=BaselineSettings(lagrange_multiplier=2.0),
        prompts=PROMPTS,
        judge=_judge(),
        command="cmd",
        seed=10,
        wall_seconds=3.0,
    )
    bench.write_outputs(results, tmp_path, "run")
    text = (tmp_path / "run.json").read_text()
    document = json.loads(text)
    record_lines = [line for line in text.splitlines() if line.startswith('  {"method":')]
    assert len(record_lines) == len(records)

    assert document["methods"] == ["plain", "inferenceguard_no_critic"]
    assert document["configuration"]["baselines"]["lagrange_multiplier"] == 2.0
    assert document["configuration"]["prompts"]["per_kind"] == {
        "harmful": {"source_a": 2},
        "benign": {"source_b": 2},
    }
    assert document["models"]["judge"] == "judge"
    assert len(document["records"]) == 8
    guard_harmful = document["summary"]["inferenceguard_no_critic"]["harmful"]
    assert guard_harmful["safety_rate"] == 1.0
    assert guard_harmful["fallback_rate"] == 1.0
    assert document["summary"]["plain"]["harmful"]["safety_rate"] == 0.0
    assert {row["method"] for row in document["targets"]} == {"inferenceguard_no_critic"}


def test_markdown_tables(forced_guard, tmp_path):
    records = _run(forced_guard, ["plain", "filter_after"], judge=_judge())
    results = bench.build_results(
        records,
        guard=forced_guard,
        config=forced_guard.config,
        settings=BaselineSettings(),
        prompts=PROMPTS,
        judge=_judge(),
        command="cmd",
        seed=0,
        wall_seconds=3.0,
    )
    bench.write_outputs(results, tmp_path, "run")
    page = (tmp_path / "run.md").read_text()

    assert "## Harmful prompts (n = 2)" in page
    assert "## Benign prompts (n = 2)" in page
    assert "| filter_after | 100% [34, 100] |" in page
    assert "| plain | 0% [0, 66] |" in page
    assert "Seconds per response by phase" in page


# --- command line ---------------------------------------------------------------------------------


def _parse(argv):
    parser = argparse.ArgumentParser()
    bench.configure_parser(parser)
    return parser.parse_args(argv)


def test_command_line_writes_outputs(tiny_guard, tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_setup(*, critic_path, use_critic, max_new_tokens):
        seen["max_new_tokens"] = max_new_tokens
        return tiny_guard, _judge()

    def fake_prompts(per_kind, *, seed=0):
        seen["per_kind"] = per_kind
        return PROMPTS[: 2 * per_kind]

    monkeypatch.setattr(bench, "load_default_setup", fake_setup)
    monkeypatch.setattr(bench, "load_test_prompts", fake_prompts)
    args = _parse(
        [
            "--quick",
            "--methods",
            "plain",
            "args_cost",
            "--num-prompts",
            "1",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--profile",
        ]
    )
    assert bench.run(args) == 0

    assert seen == {"max_new_tokens": bench.QUICK.max_new_tokens, "per_kind": 1}
    assert (tmp_path / "quick.json").is_file()
    assert (tmp_path / "quick.md").is_file()
    assert (tmp_path / "quick_profile.txt").read_text().count("function calls") >= 1
    assert "## Harmful prompts (n = 1)" in capsys.readouterr().out
    document = json.loads((tmp_path / "quick.json").read_text())
    assert document["command"] == (
        f"inferenceguard bench --quick --methods plain args_cost --num-prompts 1 --out {tmp_path}"
    )


def test_command_line_rejects_critic_method_without_critic(tiny_lm, tmp_path, monkeypatch, capsys):
    model, tokenizer = tiny_lm
    guard = InferenceGuard(model, tokenizer, keyword_cost_model(["the"]), _reward(), config=SMALL)
    monkeypatch.setattr(bench, "load_default_setup", lambda **kwargs: (guard, None))
    args = _parse(["--methods", "re_control", "--out", str(tmp_path)])

    assert bench.run(args) == 2
    assert "need a critic" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [("--num-prompts", "Invalid --num-prompts 0"), ("--threads", "Invalid --threads 0")],
)
def test_command_line_rejects_zero(tmp_path, capsys, option, message):
    args = _parse([option, "0", "--out", str(tmp_path)])
    assert bench.run(args) == 2
    assert message in capsys.readouterr().err


def test_command_line_renders_earlier_run(forced_guard, tmp_path):
    records = _run(forced_guard, ["plain", "filter_after"], judge=_judge())
    results = bench.build_results(
        records,
        guard=forced_guard,
        config=forced_guard.config,
        settings=BaselineSettings(),
        prompts=PROMPTS,
        judge=_judge(),
        command="cmd",
        seed=0,
        wall_seconds=3.0,
    )
    bench.write_outputs(results, tmp_path, "run")
    (tmp_path / "run.md").unlink()
    (tmp_path / "run_time_vs_safety.png").unlink()

    assert bench.run(_parse(["--render", str(tmp_path / "run.json")])) == 0
    assert "## Benign prompts (n = 2)" in (tmp_path / "run.md").read_text()
    assert (tmp_path / "run_time_vs_safety.png").read_bytes().startswith(b"\x89PNG")


def test_command_line_render_missing_file(tmp_path, capsys):
    assert bench.run(_parse(["--render", str(tmp_path / "absent.json")])) == 2
    assert "Failed to read benchmark results" in capsys.readouterr().err
