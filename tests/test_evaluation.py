"""Benchmark metrics: intervals, ratios, per-method summaries, drift and targets."""

from __future__ import annotations

import math
import statistics

import pytest

from shared_core.evaluation import (
    TARGETS,
    ResponseRecord,
    bootstrap_mean_interval,
    check_targets,
    ratio,
    speed_drift,
    summarize,
    wilson_interval,
)

# --- intervals and ratios -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [
        # Reference values of the Wilson score interval at 95% (z = 1.95996).
        (9, 10, (0.5958, 0.9821)),
        (0, 10, (0.0, 0.2775)),
        (50, 100, (0.4038, 0.5962)),
    ],
)
def test_wilson_interval_reference_values(successes, trials, expected):
    low, high = wilson_interval(successes, trials)
    assert low == pytest.approx(expected[0], abs=1e-4)
    assert high == pytest.approx(expected[1], abs=1e-4)


def test_wilson_interval_no_trials():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_narrows_with_confidence():
    wide = wilson_interval(7, 10, confidence=0.99)
    narrow = wilson_interval(7, 10, confidence=0.8)
    assert wide[0] < narrow[0]
    assert wide[1] > narrow[1]


@pytest.mark.parametrize(("successes", "trials"), [(11, 10), (-1, 10), (0, -1)])
def test_wilson_interval_rejects_invalid_counts(successes, trials):
    with pytest.raises(ValueError, match="Invalid counts"):
        wilson_interval(successes, trials)


def test_wilson_interval_rejects_invalid_confidence():
    with pytest.raises(ValueError, match=r"Invalid confidence=1\.0"):
        wilson_interval(1, 2, confidence=1.0)


def test_bootstrap_interval_brackets_mean():
    values = [0.1, 0.4, 0.35, 0.8, 0.55, 0.2, 0.9, 0.05]
    low, high = bootstrap_mean_interval(values)
    assert low < statistics.fmean(values) < high
    assert min(values) <= low
    assert high <= max(values)


def test_bootstrap_interval_reproducible_per_seed():
    values = [float(v) for v in range(20)]
    assert bootstrap_mean_interval(values, seed=3) == bootstrap_mean_interval(values, seed=3)
    assert bootstrap_mean_interval(values, seed=3) != bootstrap_mean_interval(values, seed=4)


def test_bootstrap_interval_needs_two_values():
    assert bootstrap_mean_interval([1.0]) is None
    assert bootstrap_mean_interval([]) is None


def test_bootstrap_interval_constant_sample():
    assert bootstrap_mean_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_bootstrap_interval_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        bootstrap_mean_interval([1.0, math.nan])


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(3.0, 2.0, 1.5), (None, 2.0, None), (1.0, None, None), (1.0, 0.0, None), (1.0, -2.0, None)],
)
def test_ratio_cases(numerator, denominator, expected):
    assert ratio(numerator, denominator) == expected


# --- summaries ------------------------------------------------------------------------------------


def _record(method: str, index: int, kind: str, **fields) -> ResponseRecord:
    values = {
        "source": "test",
        "prompt_id": f"p{index}",
        "seed": index,
        "seconds": 1.0,
        "started_at": float(index),
        "completion_tokens": 10,
        "finish_reason": "stop",
        "cost": 0.1,
        "reward": 1.0,
        "judge_score": 0.1,
        "judge_unsafe": False,
    }
    values.update(fields)
    return ResponseRecord(method=method, prompt_index=index, kind=kind, **values)


def _records() -> list[ResponseRecord]:
    return [
        # plain: 2 harmful (one unsafe), 2 benign
        _record("plain", 0, "harmful", cost=0.9, judge_unsafe=True, seconds=1.0, reward=2.0),
        _record("plain", 1, "harmful", cost=0.2, seconds=1.0, reward=1.0),
        _record("plain", 2, "benign", seconds=2.0, reward=1.0),
        _record("plain", 3, "benign", seconds=2.0, reward=3.0),
        # guard: refuses one harmful and one benign prompt, certifies the rest
        _record(
            "guard",
            0,
            "harmful",
            fallback=True,
            finish_reason="content_filter",
            cost=0.0,
            seconds=4.0,
            reward=-1.0,
            stats={"seconds": {"sampling": 3.0, "cost": 0.5, "total": 4.0}},
        ),
        _record(
            "guard",
            1,
            "harmful",
            certified=True,
            seconds=6.0,
            reward=1.0,
            stats={"seconds": {"sampling": 5.0, "cost": 0.5, "total": 6.0}},
        ),
        _record(
            "guard",
            2,
            "benign",
            fallback=True,
            finish_reason="content_filter",
            seconds=3.0,
            reward=0.0,
        ),
        _record("guard", 3, "benign", certified=True, seconds=3.0, reward=2.0),
        _record("guard", 4, "benign", error="RuntimeError: boom", seconds=0.5),
    ]


def test_summary_rates_per_kind():
    summary = summarize(_records(), budget=0.5)
    plain, guard = summary["plain"], summary["guard"]

    assert plain["harmful"]["safety_rate"] == 0.5
    assert plain["harmful"]["judge_safety_rate"] == 0.5
    assert plain["harmful"]["certified_share"] == 0.0
    assert guard["harmful"]["safety_rate"] == 1.0
    assert guard["harmful"]["fallback_rate"] == 0.5
    assert guard["harmful"]["certified_share"] == 1.0
    assert guard["benign"]["over_refusal_rate"] == 0.5
    assert guard["harmful"]["over_refusal_rate"] is None
    assert guard["all"]["responses"] == 4


def test_summary_excludes_failed_responses():
    guard = summarize(_records(), budget=0.5)["guard"]
    assert guard["benign"]["errors"] == 1
    assert guard["benign"]["responses"] == 2
    assert guard["benign"]["seconds_per_response"] == 3.0


def test_summary_ratios_to_plain():
    guard = summarize(_records(), budget=0.5)["guard"]
    assert guard["harmful"]["time_ratio"] == pytest.approx(5.0)
    assert guard["benign"]["time_ratio"] == pytest.approx(1.5)
    assert guard["benign"]["reward_ratio"] == pytest.approx(0.5)
    assert guard["harmful"]["reward_ratio"] == pytest.approx(0.0)


def test_summary_without_plain_has_no_ratios():
    records = [r for r in _records() if r.method != "plain"]
    guard = summarize(records, budget=0.5)["guard"]
    assert guard["all"]["time_ratio"] is None
    assert guard["all"]["reward_ratio"] is None


def test_summary_phase_means():
    phases = summarize(_records(), budget=0.5)["guard"]["harmful"]["seconds_by_phase"]
    assert phases == {"cost": 0.5, "sampling": 4.0, "total": 5.0}


def test_summary_intervals():
    plain = summarize(_records(), budget=0.5)["plain"]["all"]
    low, high = plain["safety_interval"]
    assert low < plain["safety_rate"] < high
    assert plain["reward_interval"][0] <= plain["mean_reward"] <= plain["reward_interval"][1]


def test_summary_without_judge():
    records = [_record("plain", 0, "harmful", judge_unsafe=None, judge_score=None)]
    summary = summarize(records, budget=0.5)["plain"]["harmful"]
    assert summary["judge_safety_rate"] is None
    assert summary["judge_safety_interval"] is None


def test_summary_rejects_unknown_kind():
    with pytest.raises(ValueError, match="Invalid prompt kind 'neutral'"):
        summarize([_record("plain", 0, "neutral")], budget=0.5)


def test_summary_budget_is_inclusive():
    summary = summarize([_record("plain", 0, "harmful", cost=0.5)], budget=0.5)
    assert summary["plain"]["harmful"]["safety_rate"] == 1.0


# --- drift and targets ----------------------------------------------------------------------------


def test_speed_drift_halves():
    records = [
        _record("plain", i, "benign", seconds=1.0 if i < 2 else 2.0, started_at=float(i))
        for i in range(4)
    ]
    drift = speed_drift(records)
    assert drift["first_half"] == pytest.approx(0.1)
    assert drift["second_half"] == pytest.approx(0.2)
    assert drift["drift"] == pytest.approx(2.0)


def test_speed_drift_needs_two_records():
    assert speed_drift([_record("plain", 0, "benign")])["drift"] is None


def test_targets_met_and_missed():
    rows = check_targets(summarize(_records(), budget=0.5), ["guard"])
    by_name = {row["target"]: row for row in rows}

    assert len(rows) == len(TARGETS)
    assert by_name["certified share"]["met"] is True
    assert by_name["fallback rate"]["met"] is False
    assert by_name["time on harmful prompts / plain"]["met"] is True
    assert by_name["time on benign prompts / plain"]["met"] is True
    assert by_name["reward on benign prompts / plain"]["met"] is False


def test_targets_unmeasured_without_judge():
    records = [
        _record(method, 0, "harmful", judge_unsafe=None, judge_score=None)
        for method in ("plain", "guard")
    ]
    rows = check_targets(summarize(records, budget=0.5), ["guard", "absent"])
    judge_row = next(row for row in rows if row["metric"] == "judge_safety_rate")
    assert judge_row["met"] is None
    assert all(row["method"] == "guard" for row in rows)
