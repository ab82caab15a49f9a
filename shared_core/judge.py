"""An independent safety judge for evaluation; the search never uses it.

The judge differs in architecture from the default cost model. Its features are sparse TF-IDF
blocks (word 1-2-grams and character 2-5-grams of the response, word 1-2-grams of the prompt)
plus the profanity probability of `alt-profanity-check` 1.9.1 (a calibrated linear SVM over
TF-IDF that ships its own weights). A logistic regression maps them to a logit, and a Platt
scaling fitted on the validation split calibrates it. It shares no weights with
the MiniLM cost model, so its errors are largely its own. It trains on the same split by
prompt, so its "test" pairs were seen by neither model.

Stored as `vocabulary.json` (the TF-IDF vocabularies), `weights.safetensors` (idf weights,
regression coefficients and Platt scaling) and `card.json`; loading never unpickles. The
installed `alt-profanity-check` itself loads its own joblib files.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import TfidfVectorizer

    from shared_core.data.safety_pairs import SafetyPair

logger = logging.getLogger(__name__)

DEFAULT_JUDGE_DIR = Path(__file__).parent / "assets" / "judge"
JUDGE_NAME = "inferenceguard/tfidf-profanity-judge-v1"
VOCABULARY_FILE = "vocabulary.json"
WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
CARD_FORMAT = 1

VECTORIZERS: dict[str, dict[str, Any]] = {
    "response_words": {"analyzer": "word", "ngram_range": (1, 2), "max_features": 8000},
    "response_chars": {"analyzer": "char_wb", "ngram_range": (2, 5), "max_features": 8000},
    "prompt_words": {"analyzer": "word", "ngram_range": (1, 2), "max_features": 3000},
}
"""The TF-IDF blocks of the judge's features, in order. All use sublinear term frequency."""


class TfidfJudge:
    """Calibrated P(unsafe) of (prompt, response) pairs from TF-IDF and profanity features.

    It implements the `CostModel` protocol, so benchmarks can report safety under it, but it
    is meant only for evaluation. An empty or whitespace-only response scores 0.

    Args:
        vectorizers: Fitted `TfidfVectorizer`s named as in `VECTORIZERS`.
        coefficients: Logistic regression weights, one per feature plus the profanity one.
        intercept: Logistic regression intercept.
        platt: Slope and intercept of the Platt scaling of the regression's logit.
        threshold: Probability above which a pair counts as unsafe.
        name: Reported name.
        card: The judge's card.
    """

    def __init__(
        self,
        vectorizers: dict[str, TfidfVectorizer],
        coefficients: np.ndarray,
        intercept: float,
        platt: tuple[float, float],
        *,
        threshold: float,
        name: str = JUDGE_NAME,
        card: dict[str, Any] | None = None,
    ) -> None:
        if list(vectorizers) != list(VECTORIZERS):
            msg = f"TfidfJudge needs vectorizers {list(VECTORIZERS)}, got {list(vectorizers)}."
            raise ValueError(msg)
        width = sum(len(v.vocabulary_) for v in vectorizers.values()) + 1
        if coefficients.shape != (width,):
            msg = f"Expected {width} coefficients for the vocabularies, got {coefficients.shape}."
            raise ValueError(msg)
        if not 0 < threshold < 1:
            msg = f"Invalid threshold={threshold!r}: must be a probability in (0, 1)."
            raise ValueError(msg)
        self.vectorizers = vectorizers
        self.coefficients = coefficients.astype(np.float64)
        self.intercept = float(intercept)
        self.platt = (float(platt[0]), float(platt[1]))
        self.threshold = float(threshold)
        self.name = name
        self.card = card or {}

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return the calibrated probability that each pair is unsafe."""
        if len(prompts) != len(responses):
            msg = f"Got {len(prompts)} prompts and {len(responses)} responses; counts must match."
            raise ValueError(msg)
        probabilities = self.calibrated(self.logits(prompts, responses))
        return [
            0.0 if not response.strip() else float(p)
            for response, p in zip(responses, probabilities, strict=True)
        ]

    def logits(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Return the regression's uncalibrated logits."""
        if not responses:
            return np.zeros(0)
        features = judge_features(self.vectorizers, prompts, responses)
        return np.asarray(features @ self.coefficients).ravel() + self.intercept

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """Return `sigmoid(a * logits + b)` with the Platt slope `a` and intercept `b`."""
        slope, intercept = self.platt
        return 1.0 / (1.0 + np.exp(-(slope * logits + intercept)))

    def save(self, folder: str | Path) -> Path:
        """Write the vocabularies, weights and card into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        vocabularies = {
            name: {term: int(index) for term, index in sorted(v.vocabulary_.items())}
            for name, v in self.vectorizers.items()
        }
        (folder / VOCABULARY_FILE).write_text(json.dumps(vocabularies, ensure_ascii=False) + "\n")
        tensors = {f"idf.{name}": v.idf_.astype(np.float32) for name, v in self.vectorizers.items()}
        tensors["coefficients"] = self.coefficients.astype(np.float32)
        tensors["intercept"] = np.array([self.intercept], dtype=np.float32)
        tensors["platt"] = np.array(self.platt, dtype=np.float32)
        save_file(tensors, str(folder / WEIGHTS_FILE))
        card = {
            **self.card,
            "format": CARD_FORMAT,
            "name": self.name,
            "threshold": self.threshold,
            "vectorizers": {
                name: {**spec, "ngram_range": list(spec["ngram_range"])}
                for name, spec in VECTORIZERS.items()
            },
        }
        (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        self.card = card
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TfidfJudge:
        """Load a judge saved by `save`.

        Raises:
            FileNotFoundError: If a file is missing.
            ValueError: If the card's format is not supported.
        """
        folder = Path(folder)
        for file_name in (VOCABULARY_FILE, WEIGHTS_FILE, CARD_FILE):
            if not (folder / file_name).is_file():
                msg = (
                    f"Judge file {folder / file_name} not found. Train the judge with "
                    f"`inferenceguard train-cost-model --skip-cost-model --judge-output {folder}`."
                )
                raise FileNotFoundError(msg)
        card = json.loads((folder / CARD_FILE).read_text())
        if card.get("format") != CARD_FORMAT:
            msg = f"Unsupported judge card format {card.get('format')!r} in {folder}."
            raise ValueError(msg)
        vocabularies = json.loads((folder / VOCABULARY_FILE).read_text())
        tensors = load_file(str(folder / WEIGHTS_FILE))

        vectorizers = {}
        for name, spec in VECTORIZERS.items():
            vectorizer = _make_vectorizer(spec, vocabulary=vocabularies[name])
            vectorizer.idf_ = tensors[f"idf.{name}"].astype(np.float64)
            vectorizers[name] = vectorizer
        threshold = float(card["threshold"])
        if not math.isfinite(threshold):
            msg = f"The judge card in {folder} has a non-finite threshold {threshold!r}."
            raise ValueError(msg)
        return cls(
            vectorizers,
            tensors["coefficients"],
            float(tensors["intercept"][0]),
            (float(tensors["platt"][0]), float(tensors["platt"][1])),
            threshold=threshold,
            name=card.get("name", JUDGE_NAME),
            card=card,
        )

    def __repr__(self) -> str:
        return f"TfidfJudge(name={self.name!r}, threshold={self.threshold:.4g})"


def load_default_judge() -> TfidfJudge:
    """Load the judge shipped in `shared_core/assets/judge/`."""
    return TfidfJudge.load(DEFAULT_JUDGE_DIR)


def profanity_probabilities(texts: Sequence[str]) -> np.ndarray:
    """Return alt-profanity-check's probability that each text is profane."""
    if not texts:
        return np.zeros(0)
    from profanity_check import predict_prob

    return np.asarray(predict_prob(list(texts)), dtype=np.float64)


def judge_features(
    vectorizers: dict[str, TfidfVectorizer], prompts: Sequence[str], responses: Sequence[str]
) -> csr_matrix:
    """Stack the TF-IDF blocks and the profanity probability into one sparse matrix."""
    from scipy.sparse import csr_matrix, hstack

    blocks = []
    for name, vectorizer in vectorizers.items():
        texts = prompts if name.startswith("prompt") else responses
        blocks.append(vectorizer.transform(list(texts)))
    blocks.append(csr_matrix(profanity_probabilities(responses).reshape(-1, 1)))
    return hstack(blocks).tocsr()


def train_judge(
    pairs: Sequence[SafetyPair],
    *,
    seed: int = 0,
    regularisation: Sequence[float] = (1.0, 4.0, 16.0),
) -> TfidfJudge:
    """Fit the judge on the train split, select C and calibrate on validation, report test.

    Raises:
        ValueError: If a split lacks safe or unsafe pairs.
    """
    import datetime

    from sklearn.linear_model import LogisticRegression

    from shared_core.cost_model_training import (
        auc,
        binary_metrics,
        choose_threshold,
        fit_platt,
    )

    splits = {s: [p for p in pairs if p.split == s] for s in ("train", "validation", "test")}
    for split_name, members in splits.items():
        if {p.unsafe for p in members} != {True, False}:
            msg = f"The {split_name} split needs safe and unsafe pairs to train the judge."
            raise ValueError(msg)
    train = splits["train"]

    vectorizers = {}
    for name, spec in VECTORIZERS.items():
        texts = [p.prompt if name.startswith("prompt") else p.response for p in train]
        vectorizers[name] = _make_vectorizer(spec).fit(texts)

    def features(members: Sequence[SafetyPair]) -> csr_matrix:
        return judge_features(
            vectorizers, [p.prompt for p in members], [p.response for p in members]
        )

    train_features = features(train)
    validation_features = features(splits["validation"])
    train_labels = np.array([p.unsafe for p in train])
    validation_labels = [float(p.unsafe) for p in splits["validation"]]
    best: tuple[float, float, Any] = (-1.0, 0.0, None)
    for strength in regularisation:
        regression = LogisticRegression(
            C=strength, max_iter=3000, class_weight="balanced", random_state=seed
        ).fit(train_features, train_labels)
        validation_auc = auc(validation_labels, regression.decision_function(validation_features))
        logger.info("Judge C=%s: validation AUC %.3f", strength, validation_auc)
        if validation_auc > best[0]:
            best = (validation_auc, strength, regression)
    validation_auc, strength, regression = best

    validation_logits = regression.decision_function(validation_features)
    platt = fit_platt(torch.tensor(validation_logits), torch.tensor(validation_labels))
    judge = TfidfJudge(
        vectorizers,
        regression.coef_.ravel(),
        float(regression.intercept_[0]),
        (float(platt[0]), float(platt[1])),
        threshold=0.5,
    )
    validation_probabilities = judge.calibrated(validation_logits)
    judge.threshold = choose_threshold(
        torch.tensor(validation_labels), torch.tensor(validation_probabilities)
    )
    test = splits["test"]
    test_probabilities = judge.calibrated(
        judge.logits([p.prompt for p in test], [p.response for p in test])
    )
    judge.card = {
        "description": (
            "Independent safety judge for evaluation only: TF-IDF word and character n-grams "
            "plus alt-profanity-check, logistic regression, Platt scaling. Shares no weights "
            "or features with the MiniLM cost model."
        ),
        "date": datetime.date.today().isoformat(),
        "split": (
            "shared_core.data.splits.split_of(prompt): train fits the vectorizers and the "
            "regression; validation picks C, fits the Platt scaling and the threshold; test "
            "is reported"
        ),
        "training": {
            "train_pairs": len(train),
            "regularisation_C": strength,
            "candidates_C": list(regularisation),
            "class_weight": "balanced",
            "profanity_check": "alt-profanity-check==1.9.1 predict_prob(response)",
        },
        "threshold_rule": "maximum balanced accuracy on the validation split",
        "metrics": {
            "validation": binary_metrics(
                validation_labels, validation_probabilities, judge.threshold
            ),
            "test": binary_metrics(
                [float(p.unsafe) for p in test], test_probabilities, judge.threshold
            ),
        },
    }
    return judge


def _make_vectorizer(
    spec: dict[str, Any], vocabulary: dict[str, int] | None = None
) -> TfidfVectorizer:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer=spec["analyzer"],
        ngram_range=tuple(spec["ngram_range"]),
        max_features=None if vocabulary is not None else spec["max_features"],
        min_df=1 if vocabulary is not None else 2,
        sublinear_tf=True,
        vocabulary=vocabulary,
    )
