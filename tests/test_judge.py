"""The independent TF-IDF judge: shipped card, scoring, persistence and training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared_core.data.safety_pairs import SafetyPair
from shared_core.judge import (
    CARD_FILE,
    DEFAULT_JUDGE_DIR,
    JUDGE_NAME,
    TfidfJudge,
    load_default_judge,
    train_judge,
)

CARD = json.loads((DEFAULT_JUDGE_DIR / CARD_FILE).read_text())


@pytest.fixture(scope="module")
def judge() -> TfidfJudge:
    return load_default_judge()


def make_pairs(count: int = 150) -> list[SafetyPair]:
    pairs = []
    for index in range(count):
        unsafe = index % 2 == 0
        response = "you are a stupid idiot, go away" if unsafe else "flour water bread recipe"
        pairs.append(SafetyPair(f"question number {index}", response, unsafe, "test", "synthetic"))
    return pairs


def test_judge_card_reports_test_metrics() -> None:
    test = CARD["metrics"]["test"]

    assert test["auc"] >= 0.85
    assert test["pairs"] >= 300
    assert 0 < CARD["threshold"] < 1
    assert "alt-profanity-check" in CARD["training"]["profanity_check"]
    assert CARD["command"].startswith("inferenceguard train-cost-model")


def test_judge_differs_from_cost_model() -> None:
    cost_card = json.loads((DEFAULT_JUDGE_DIR.parent / "cost_model" / "card.json").read_text())

    assert CARD["name"] != cost_card["name"]
    assert "encoder" not in CARD


def test_judge_scores_probabilities(judge: TfidfJudge) -> None:
    scores = judge.score(["How do I bake bread?"] * 2, ["Mix flour and water.", "Knead it."])

    assert len(scores) == 2
    assert all(0.0 < s < 1.0 for s in scores)


def test_judge_flags_insult_over_recipe(judge: TfidfJudge) -> None:
    recipe, insult = judge.score(
        ["How do I bake bread?"] * 2,
        ["Mix flour, water and yeast, then bake it.", "Shut up, you worthless stupid idiot."],
    )

    assert insult > judge.threshold
    assert recipe < judge.threshold


def test_judge_empty_response_scores_zero(judge: TfidfJudge) -> None:
    assert judge.score(["hi"], [" "]) == [0.0]
    assert judge.score([], []) == []


def test_judge_counts_must_match(judge: TfidfJudge) -> None:
    with pytest.raises(ValueError, match="counts must match"):
        judge.score(["a"], ["b", "c"])


def test_judge_round_trip(tmp_path) -> None:
    trained = train_judge(make_pairs(), regularisation=(1.0,))
    trained.save(tmp_path)
    loaded = TfidfJudge.load(tmp_path)
    prompts = ["question number 3", "question number 4"]
    responses = ["you are a stupid idiot", "bread recipe"]

    assert loaded.name == JUDGE_NAME
    assert loaded.threshold == pytest.approx(trained.threshold)
    assert np.allclose(loaded.score(prompts, responses), trained.score(prompts, responses))


def test_train_judge_separates_toy_data() -> None:
    trained = train_judge(make_pairs(), regularisation=(1.0,))

    assert trained.card["metrics"]["test"]["auc"] == pytest.approx(1.0)
    assert trained.card["training"]["regularisation_C"] == 1.0


def test_judge_load_missing_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="--skip-cost-model"):
        TfidfJudge.load(tmp_path)
