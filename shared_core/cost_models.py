"""The embedded default cost model: a calibrated harm head on frozen MiniLM embeddings.

The features of a (prompt, response) pair are the response's mean-pooled hidden states of every
encoder layer, the prompt's sentence embedding `p`, and the product `p * r` with the response's
sentence embedding `r`. They are standardised with the training set's mean and deviation. The
lower layers keep lexical cues (profanity, slurs) that the last layer's sentence embedding
mostly averages away. A small MLP maps the features to a logit, and a Platt scaling
`sigmoid(a * logit + b)` fitted on held-out data turns it into a calibrated probability that
the pair is unsafe. Weights are stored as safetensors and everything else in a JSON card, so
loading never unpickles.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from shared_core.encoders import PromptEmbeddingCache, SentenceEncoder, load_default_encoder

logger = logging.getLogger(__name__)

DEFAULT_COST_MODEL_DIR = Path(__file__).parent / "assets" / "cost_model"
WEIGHTS_FILE = "head.safetensors"
CARD_FILE = "card.json"
CARD_FORMAT = 1


class HarmHead(torch.nn.Module):
    """A small MLP from (prompt, response) embedding features to an unsafe logit.

    Args:
        num_layers: Encoder layers pooled for the response.
        dimension: Size of one pooled vector.
        hidden_size: Width of the hidden layer.
        dropout: Dropout rate on the input and the hidden layer during training.
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    platt: torch.Tensor

    def __init__(
        self, num_layers: int, dimension: int, hidden_size: int = 256, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.dimension = dimension
        self.hidden_size = hidden_size
        self.dropout = dropout
        width = self.feature_size(num_layers, dimension)
        self.layers = torch.nn.Sequential(
            torch.nn.Dropout(dropout),
            torch.nn.Linear(width, hidden_size),
            torch.nn.GELU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden_size, 1),
        )
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_std", torch.ones(width))
        self.register_buffer("platt", torch.tensor([1.0, 0.0]))  # slope a, intercept b

    @staticmethod
    def feature_size(num_layers: int, dimension: int) -> int:
        """Return the width of the features built by `features`."""
        return (num_layers + 2) * dimension

    @staticmethod
    def features(prompt_embeddings: torch.Tensor, response_layers: torch.Tensor) -> torch.Tensor:
        """Build the raw features of a batch of pairs.

        Args:
            prompt_embeddings: Normalised prompt sentence embeddings, shape `(batch, dimension)`.
            response_layers: Per-layer mean-pooled response states, shape
                `(batch, num_layers, dimension)`, as `SentenceEncoder.encode_layers` returns.

        Returns:
            `[response layers, p, p * r]`, shape `(batch, (num_layers + 2) * dimension)`.
        """
        response_embeddings = torch.nn.functional.normalize(response_layers[:, -1], dim=-1)
        return torch.cat(
            [
                response_layers.flatten(start_dim=1),
                prompt_embeddings,
                prompt_embeddings * response_embeddings,
            ],
            dim=-1,
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return uncalibrated unsafe logits of raw features, shape `(batch,)`."""
        standardised = (features - self.feature_mean) / self.feature_std
        return self.layers(standardised).squeeze(-1)

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        """Return the Platt-scaled probabilities `sigmoid(a * logits + b)`."""
        slope, intercept = self.platt
        return torch.sigmoid(slope * logits + intercept)


class MiniLMCostModel:
    """Calibrated P(unsafe) of (prompt, response) pairs from a head on MiniLM embeddings.

    The cost of a response is the probability that it is unsafe (harmful compliance or toxic
    text), so the threshold, and the default safety budget, is a probability. An empty or
    whitespace-only response has cost 0 because it shows the user nothing. A response longer
    than the encoder's token limit is split into overlapping windows and costs as much as its
    most unsafe window.

    Prompt embeddings are cached, because the search scores many candidates of one prompt.

    Args:
        head: The trained head, with its Platt scaling.
        encoder: The sentence encoder the head was trained on.
        threshold: The default safety budget, a probability in (0, 1).
        name: The name reported with every safety claim.
        card: The model card (training data and metrics).
        prompt_cache_size: Prompt embeddings kept in memory.

    Example:
        >>> cost_model = load_default_cost_model()  # doctest: +SKIP
        >>> prompts, responses = ["How do I bake bread?"], ["Mix flour, water and yeast."]
        >>> cost_model.score(prompts, responses)  # doctest: +SKIP
        [0.02]
    """

    def __init__(
        self,
        head: HarmHead,
        encoder: SentenceEncoder,
        *,
        threshold: float,
        name: str,
        card: dict[str, Any] | None = None,
        prompt_cache_size: int = 256,
    ) -> None:
        if not (isinstance(threshold, int | float) and 0 < threshold < 1):
            msg = f"Invalid threshold={threshold!r}: must be a probability in (0, 1)."
            raise ValueError(msg)
        if (head.num_layers, head.dimension) != (encoder.num_layers, encoder.dimension):
            msg = (
                f"The head expects {head.num_layers} layers of {head.dimension}-dimensional "
                f"states, but the encoder {encoder.name!r} has {encoder.num_layers} layers of "
                f"{encoder.dimension}. Load the encoder the head was trained on."
            )
            raise ValueError(msg)
        self.head = head.eval()
        self.encoder = encoder
        self.threshold = float(threshold)
        self.name = name
        self.card = card or {}
        self.prompt_cache = PromptEmbeddingCache(encoder, prompt_cache_size)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return the calibrated probability that each (prompt, response) pair is unsafe.

        Raises:
            ValueError: If the numbers of prompts and responses differ.
        """
        if len(prompts) != len(responses):
            msg = f"Got {len(prompts)} prompts and {len(responses)} responses; counts must match."
            raise ValueError(msg)
        if not responses:
            return []

        pieces, owners = self._split_responses(responses)
        scores = [0.0] * len(responses)
        if not pieces:
            return scores
        piece_prompts = [prompts[owner] for owner in owners]
        probabilities = self._score_pieces(piece_prompts, pieces)
        for owner, probability in zip(owners, probabilities, strict=True):
            scores[owner] = max(scores[owner], probability)
        return scores

    def _split_responses(self, responses: Sequence[str]) -> tuple[list[str], list[int]]:
        # Windows stay a little under the token limit, so that special tokens fit.
        max_tokens = self.encoder.max_length - 2
        pieces: list[str] = []
        owners: list[int] = []
        for index, response in enumerate(responses):
            if not response.strip():
                continue
            windows = self.encoder.split_windows(
                response, max_tokens=max_tokens, stride=max_tokens * 3 // 4
            )
            pieces.extend(windows)
            owners.extend([index] * len(windows))
        return pieces, owners

    def _score_pieces(self, prompts: list[str], responses: list[str]) -> list[float]:
        prompt_embeddings = self.prompt_cache.embed(prompts)
        response_layers = self.encoder.encode_layers(responses)
        with torch.inference_mode():
            logits = self.head(HarmHead.features(prompt_embeddings, response_layers))
            probabilities = self.head.calibrated(logits)
        return [float(p) for p in probabilities]

    # --- persistence ------------------------------------------------------------------------

    def save(self, folder: str | Path, card: dict[str, Any] | None = None) -> Path:
        """Write the head as safetensors and the card as JSON into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {key: value.contiguous() for key, value in self.head.state_dict().items()}
        save_file(tensors, str(folder / WEIGHTS_FILE))
        card = dict(card or self.card)
        card.update(
            {
                "format": CARD_FORMAT,
                "name": self.name,
                "threshold": self.threshold,
                "encoder": self.encoder.name,
                "encoder_max_length": self.encoder.max_length,
                "head": {
                    "num_layers": self.head.num_layers,
                    "dimension": self.head.dimension,
                    "hidden_size": self.head.hidden_size,
                    "dropout": self.head.dropout,
                    "features": "[response layer means, prompt, prompt * response]",
                },
            }
        )
        (folder / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
        self.card = card
        return folder

    @classmethod
    def load(
        cls, folder: str | Path, *, encoder: SentenceEncoder | None = None, device: str = "cpu"
    ) -> MiniLMCostModel:
        """Load a head saved by `save`, on the shared default encoder unless one is given.

        Raises:
            FileNotFoundError: If the folder lacks the weights or the card.
            ValueError: If the card's format or the head's encoder does not match.
        """
        folder = Path(folder)
        card = _read_card(folder)
        encoder = encoder or load_default_encoder(device)
        if card.get("encoder") != encoder.name:
            msg = (
                f"The cost model in {folder} was trained on the encoder {card.get('encoder')!r}, "
                f"not {encoder.name!r}; pass the matching encoder."
            )
            raise ValueError(msg)
        spec = card["head"]
        head = HarmHead(spec["num_layers"], spec["dimension"], spec["hidden_size"])
        head.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        threshold = float(card["threshold"])
        if not math.isfinite(threshold):
            msg = f"The card in {folder} has a non-finite threshold {threshold!r}."
            raise ValueError(msg)
        return cls(head, encoder, threshold=threshold, name=card["name"], card=card)

    def __repr__(self) -> str:
        return f"MiniLMCostModel(name={self.name!r}, threshold={self.threshold:.4g})"


def load_default_cost_model(*, device: str = "cpu") -> MiniLMCostModel:
    """Load the cost model shipped in `shared_core/assets/cost_model/`."""
    return MiniLMCostModel.load(DEFAULT_COST_MODEL_DIR, device=device)


def _read_card(folder: Path) -> dict[str, Any]:
    weights = folder / WEIGHTS_FILE
    card_path = folder / CARD_FILE
    for path in (weights, card_path):
        if not path.is_file():
            msg = (
                f"Cost model file {path} not found. Train one with "
                f"`inferenceguard train-cost-model --output {folder}`."
            )
            raise FileNotFoundError(msg)
    card = json.loads(card_path.read_text())
    if card.get("format") != CARD_FORMAT:
        msg = f"Unsupported cost model card format {card.get('format')!r} in {card_path}."
        raise ValueError(msg)
    return dict(card)
