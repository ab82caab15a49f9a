"""The latent critic: a small MLP on the base model's hidden state and the safety state.

`LatentCritic.predict(hidden, z)` returns `(p_safe, v_task)`:

- `p_safe` estimates the probability that a continuation sampled from the base model keeps the
  safety state `z >= 0` at every later block boundary. A state that is already violated
  (`z < 0`) is absorbing, so `predict` returns `p_safe = 0` there, whatever the network outputs.
- `v_task` estimates the final reward `R(x, y)` of the reward model the critic was trained with.

A critic is stored as a folder with `critic.safetensors` (weights only; nothing is unpickled) and
`critic.json`, the card: base model name and fingerprint, hidden size, layer, cost and reward
models, budget, scale, training data and metrics. `load_critic(path, model)` rejects a critic
whose card does not match `model`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

logger = logging.getLogger(__name__)

CARD_FILE = "critic.json"
WEIGHTS_FILE = "critic.safetensors"
CARD_FORMAT = 2
DEFAULT_CRITIC_DIR = Path(__file__).parent / "assets" / "critic"

FINGERPRINT_CONFIG_KEYS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "tie_word_embeddings",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
)
"""Config keys that change the computation. Names, dtypes and loader metadata are left out, so
the same weights loaded from GGUF or from safetensors get the same fingerprint."""

FINGERPRINT_SAMPLES_PER_TENSOR = 64


class CriticCompatibilityError(ValueError):
    """Raised when a critic was trained for another base model or hidden size."""


@dataclass
class CriticCard:
    """The metadata stored next to a critic's weights in `critic.json`."""

    hidden_size: int
    layer: int = -1
    """Index into the base model's `hidden_states` tuple (`-1` is the last layer)."""

    scale: float = 1.0
    """Divisor of the safety state: the network input is `z / scale`."""

    hidden_dims: tuple[int, ...] = (256, 256)
    """Widths of the MLP's hidden layers."""

    dropout: float = 0.1
    name: str = "latent-critic"
    base_model: str | None = None
    base_model_fingerprint: str | None = None
    """`model_fingerprint(base_model)`; `None` skips the check (for example in unit tests)."""

    cost_model: str | None = None
    cost_model_threshold: float | None = None
    budget: float | None = None
    reward_model: str | None = None
    reward_mean: float = 0.0
    """Mean of the training rewards; `v_task` is trained on standardised rewards."""

    reward_std: float = 1.0
    training: dict[str, Any] = field(default_factory=dict)
    """Data and settings of the training run: prompt counts and sources, samples, seeds."""

    metrics: dict[str, Any] = field(default_factory=dict)
    """Held-out AUC and Brier score of `p_safe`, R² of `v_task`, on the validation split."""

    evaluation: dict[str, Any] = field(default_factory=dict)
    """Results of `inferenceguard eval-critic`: test metrics, search with and without critic."""

    format: int = CARD_FORMAT

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(d) for d in self.hidden_dims)
        _require(
            isinstance(self.hidden_size, int) and self.hidden_size > 0,
            f"Invalid hidden_size={self.hidden_size!r}: must be a positive integer.",
        )
        _require(
            isinstance(self.layer, int) and not isinstance(self.layer, bool),
            f"Invalid layer={self.layer!r}: must be an integer index into hidden_states.",
        )
        _require(
            math.isfinite(self.scale) and self.scale > 0,
            f"Invalid scale={self.scale!r}: must be a finite number > 0.",
        )
        _require(
            all(d > 0 for d in self.hidden_dims),
            f"Invalid hidden_dims={self.hidden_dims!r}: every width must be > 0.",
        )
        _require(0 <= self.dropout < 1, f"Invalid dropout={self.dropout!r}: must be in [0, 1).")
        _require(
            math.isfinite(self.reward_std) and self.reward_std > 0,
            f"Invalid reward_std={self.reward_std!r}: must be a finite number > 0.",
        )
        if self.format != CARD_FORMAT:
            msg = (
                f"Unsupported critic card format {self.format!r}: this version of inferenceguard "
                f"reads format {CARD_FORMAT}. Retrain the critic with "
                "`inferenceguard train-critic`."
            )
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        """Return the card as plain JSON values."""
        data = asdict(self)
        data["hidden_dims"] = list(self.hidden_dims)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CriticCard:
        """Build a card from `to_dict` output; keys this version does not know are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("Ignoring unknown critic card keys %s", unknown)
        return cls(**{k: v for k, v in data.items() if k in known})


class LatentCritic(nn.Module):
    """A two-headed MLP critic on a hidden state and the normalised safety state.

    The hidden state goes through a LayerNorm without learned parameters, because the scale of
    hidden states differs a lot between layers and models, and `z / scale` is appended. A shared
    trunk of `card.hidden_dims` feeds a safety head (a logit for `p_safe`) and a task head
    (`v_task`, standardised with `card.reward_mean` and `card.reward_std`).

    The safety logit also gets a learned linear term in `z / scale`, so logistic regression on
    the safety state alone is inside the model class and the MLP learns a correction from the
    hidden state. Without that term the critic ranked held-out rows worse than `z` alone did.

    Args:
        card: The critic's settings and metadata. `card.hidden_size` must equal the hidden size
            of the base model's layer `card.layer`.

    Example:
        >>> critic = LatentCritic(CriticCard(hidden_size=8, hidden_dims=(16,)))
        >>> p_safe, v_task = critic.predict(torch.randn(3, 8), torch.tensor([0.5, 0.0, -0.1]))
        >>> p_safe.shape, float(p_safe[2])
        (torch.Size([3]), 0.0)
    """

    def __init__(self, card: CriticCard) -> None:
        super().__init__()
        self.card = card
        self.norm = nn.LayerNorm(card.hidden_size, elementwise_affine=False)
        layers: list[nn.Module] = []
        width = card.hidden_size + 1
        for out in card.hidden_dims:
            layers += [nn.Linear(width, out), nn.GELU(), nn.Dropout(card.dropout)]
            width = out
        self.trunk = nn.Sequential(*layers)
        self.safety_head = nn.Linear(width, 1)
        self.task_head = nn.Linear(width, 1)
        self.safety_state_logit = nn.Linear(1, 1)
        with torch.no_grad():
            self.safety_state_logit.weight.fill_(1.0)
            self.safety_state_logit.bias.zero_()
        self.eval()

    # --- the Critic protocol ------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The critic's name, reported in guarantee reports."""
        return self.card.name

    @property
    def layer(self) -> int:
        """Index into the base model's `hidden_states` tuple."""
        return self.card.layer

    @property
    def scale(self) -> float:
        """Divisor of the safety state: the network input is `z / scale`."""
        return self.card.scale

    def forward(
        self, hidden: torch.Tensor, safety_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the safety logit and the standardised task value, each of shape `(batch,)`.

        Args:
            hidden: Hidden states, shape `(batch, hidden_size)`.
            safety_state: Unnormalised safety states `z`, shape `(batch,)`.
        """
        normalised_state = (safety_state / self.card.scale).unsqueeze(-1)
        features = torch.cat([self.norm(hidden), normalised_state], dim=-1)
        trunk = self.trunk(features)
        safety_logit = self.safety_head(trunk) + self.safety_state_logit(normalised_state)
        return safety_logit.squeeze(-1), self.task_head(trunk).squeeze(-1)

    @torch.no_grad()
    def predict(
        self, hidden: torch.Tensor, safety_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return `(p_safe, v_task)`, each of shape `(batch,)`, on the device of `hidden`.

        `p_safe` is 0 wherever `safety_state < 0`, because a violated state is absorbing.

        Args:
            hidden: Hidden states of layer `layer` at the last token, shape
                `(batch, hidden_size)`, any float dtype and device.
            safety_state: Unnormalised safety states `z = budget - cost`, shape `(batch,)`.

        Raises:
            ValueError: If the shapes do not match the critic.
        """
        if hidden.ndim != 2 or hidden.shape[-1] != self.card.hidden_size:
            msg = (
                f"Critic {self.name!r} expects hidden states of shape (batch, "
                f"{self.card.hidden_size}), got {tuple(hidden.shape)}."
            )
            raise ValueError(msg)
        safety_state = torch.as_tensor(safety_state).reshape(-1)
        if safety_state.shape[0] != hidden.shape[0]:
            msg = (
                f"Got {hidden.shape[0]} hidden states and {safety_state.shape[0]} safety states; "
                "counts must match."
            )
            raise ValueError(msg)

        if self.training:
            self.eval()
        parameter = next(self.parameters())
        device, dtype = parameter.device, parameter.dtype
        states = safety_state.to(device=device, dtype=dtype)
        logits, task = self(hidden.to(device=device, dtype=dtype), states)
        p_safe = torch.sigmoid(logits).masked_fill(states < 0, 0.0)
        v_task = task * self.card.reward_std + self.card.reward_mean
        return p_safe.to(hidden.device), v_task.to(hidden.device)

    def check_compatible(self, model: nn.Module) -> None:
        """Raise `CriticCompatibilityError` if the critic was not trained for `model`.

        Checks the hidden size, that `layer` indexes the model's `hidden_states`, and (when the
        card has one) the base model fingerprint.
        """
        config = _text_config(model)
        hidden_size = getattr(config, "hidden_size", None)
        if hidden_size != self.card.hidden_size:
            msg = (
                f"Critic {self.name!r} was trained on hidden states of size "
                f"{self.card.hidden_size}, but model {_model_name(model)!r} has hidden size "
                f"{hidden_size}. Train a critic for this model with `inferenceguard "
                "collect-critic-data` and `inferenceguard train-critic`."
            )
            raise CriticCompatibilityError(msg)

        num_layers = getattr(config, "num_hidden_layers", None)
        if isinstance(num_layers, int) and not -(num_layers + 1) <= self.card.layer <= num_layers:
            msg = (
                f"Critic {self.name!r} reads hidden_states[{self.card.layer}], but model "
                f"{_model_name(model)!r} returns {num_layers + 1} hidden states."
            )
            raise CriticCompatibilityError(msg)

        expected = self.card.base_model_fingerprint
        if expected is None:
            return
        actual = model_fingerprint(model)
        if actual != expected:
            msg = (
                f"Critic {self.name!r} was trained for base model {self.card.base_model!r} "
                f"(fingerprint {expected}), but the given model {_model_name(model)!r} has "
                f"fingerprint {actual}: its config or weights differ. Use the base model the "
                "critic was trained on, or train a critic for this model with `inferenceguard "
                "collect-critic-data` and `inferenceguard train-critic`."
            )
            raise CriticCompatibilityError(msg)

    # --- persistence --------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write `critic.safetensors` and `critic.json` into the folder `path`; return `path`."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
        card_text = json.dumps(self.card.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        (folder / CARD_FILE).write_text(card_text + "\n", encoding="utf-8")
        logger.info("Saved critic %r to %s", self.name, folder)
        return folder

    def __repr__(self) -> str:
        return (
            f"LatentCritic(name={self.name!r}, base_model={self.card.base_model!r}, "
            f"hidden_size={self.card.hidden_size}, layer={self.layer}, "
            f"hidden_dims={self.card.hidden_dims})"
        )


def load_critic(
    path: str | Path,
    model: nn.Module | None = None,
    *,
    device: str | torch.device | None = None,
) -> LatentCritic:
    """Load a critic saved by `LatentCritic.save`, checking it against `model` when given.

    Args:
        path: The critic folder, or its `critic.json` or `critic.safetensors` file.
        model: The base model the critic will run with.
        device: Where to put the critic. Defaults to CPU.

    Raises:
        FileNotFoundError: If the card or the weights are missing.
        CriticCompatibilityError: If the critic does not match `model`.
        ValueError: If the card or the weights are invalid.
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    card_path, weights_path = folder / CARD_FILE, folder / WEIGHTS_FILE
    for required in (card_path, weights_path):
        if not required.is_file():
            msg = (
                f"Critic file {required} not found. A critic folder contains {CARD_FILE} and "
                f"{WEIGHTS_FILE}, as written by `inferenceguard train-critic`."
            )
            raise FileNotFoundError(msg)

    try:
        card = CriticCard.from_dict(json.loads(card_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as error:
        msg = f"Invalid critic card {card_path}: {error}"
        raise ValueError(msg) from error
    critic = LatentCritic(card)
    state = load_file(str(weights_path))
    try:
        critic.load_state_dict(state)
    except RuntimeError as error:
        msg = f"Critic weights {weights_path} do not match the card {card_path}: {error}"
        raise ValueError(msg) from error
    critic.to(device or "cpu").eval()
    if model is not None:
        critic.check_compatible(model)
    logger.info("Loaded %r from %s", critic, folder)
    return critic


def load_default_critic(model: nn.Module | None = None) -> LatentCritic:
    """Load the critic shipped for SmolLM2-135M-Instruct with the default cost and reward models.

    Args:
        model: The base model, to check the critic against.

    Raises:
        FileNotFoundError: If this installation ships no default critic.
        CriticCompatibilityError: If `model` is not the model the default critic was trained for.
    """
    if not (DEFAULT_CRITIC_DIR / CARD_FILE).is_file():
        msg = (
            f"No default critic found in {DEFAULT_CRITIC_DIR}. Train one with `inferenceguard "
            f"collect-critic-data` and `inferenceguard train-critic --output {DEFAULT_CRITIC_DIR}`."
        )
        raise FileNotFoundError(msg)
    return load_critic(DEFAULT_CRITIC_DIR, model)


def model_fingerprint(model: nn.Module) -> str:
    """Return a short hash of a model's architecture config and a sample of its weights.

    The weight sample is `FINGERPRINT_SAMPLES_PER_TENSOR` evenly spaced elements of every tensor
    of the state dict, rounded to bfloat16 so that the fp32 and bf16 copies of one model match.
    It takes a few milliseconds for a 135M-parameter model. Models whose weights are quantized
    or offloaded to the meta device get a fingerprint of what is loaded, which differs from the
    full-precision model's.
    """
    digest = hashlib.sha256()
    digest.update(_config_json(model).encode())
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name]
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        if tensor.device.type == "meta" or not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        flat = tensor.detach().reshape(-1)
        count = min(FINGERPRINT_SAMPLES_PER_TENSOR, flat.numel())
        step = (flat.numel() - 1) // max(count - 1, 1)
        index = torch.arange(count, device=flat.device) * step
        sample = flat[index].to(torch.bfloat16).view(torch.int16).cpu()
        digest.update(sample.numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:16]


def hidden_size_of(model: nn.Module) -> int:
    """Return the hidden size of `model`'s text config.

    Raises:
        ValueError: If the config has no integer `hidden_size`.
    """
    size = getattr(_text_config(model), "hidden_size", None)
    if not isinstance(size, int):
        msg = f"Model {_model_name(model)!r} has no integer hidden_size in its config."
        raise ValueError(msg)
    return size


def _config_json(model: nn.Module) -> str:
    config = _text_config(model)
    values = {key: getattr(config, key, None) for key in FINGERPRINT_CONFIG_KEYS}
    return json.dumps(values, sort_keys=True, default=str)


def _text_config(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is None:
        msg = f"Model {type(model).__name__} has no `config`; pass a transformers PreTrainedModel."
        raise ValueError(msg)
    if hasattr(config, "get_text_config"):
        return config.get_text_config()
    return config


def _model_name(model: nn.Module) -> str:
    return str(getattr(model, "name_or_path", "") or type(model).__name__)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def describe_card(card: CriticCard, keys: Sequence[str] = ("metrics", "evaluation")) -> str:
    """Return selected card sections as indented JSON, for command-line output."""
    return json.dumps({k: getattr(card, k) for k in keys}, indent=2, sort_keys=True)
