"""`inferenceguard train-critic`: fit a latent critic on collected data.

The safety head is trained with binary cross-entropy on the final-safety labels and the task
head with mean squared error on standardised final rewards. Validation rows come from the
prompts of the validation split (never the same prompt as a training row); test-split rows are
dropped. Training stops early when the validation loss has not improved for `patience` epochs,
and the best epoch's weights are kept.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional
from tqdm.auto import tqdm

from shared_core.critic import DEFAULT_CRITIC_DIR, CriticCard, LatentCritic
from shared_core.critic_store import CriticExamples, load_examples, read_setup

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSettings:
    """Optimisation settings of `train_critic`.

    The InferenceGuard paper trains with learning rate 1e-5, batch 8 and 50 epochs on the hidden
    states of 7B models. These defaults suit a few thousand rows and a small MLP instead.
    """

    epochs: int = 50
    """Maximum number of passes over the training rows."""

    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 6
    """Stop after this many epochs without a lower validation loss."""

    value_weight: float = 0.5
    """Weight of the task head's MSE against the safety head's BCE in the loss."""

    hidden_dims: tuple[int, ...] = (256, 256)
    dropout: float = 0.1
    seed: int = 0
    validation_fraction: float = 0.2
    """Share of training prompts held out when the data has no validation-split prompt."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"Invalid {name}={value!r}: must be an integer >= 1."
                raise ValueError(msg)
        for name in ("learning_rate", "weight_decay", "value_weight"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                msg = f"Invalid {name}={value!r}: must be a finite number >= 0."
                raise ValueError(msg)
        if not 0 < self.validation_fraction < 1:
            msg = f"Invalid validation_fraction={self.validation_fraction!r}: must be in (0, 1)."
            raise ValueError(msg)


# --- metrics ------------------------------------------------------------------------------------


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Return the area under the ROC curve, or `None` when only one class is present.

    Computed as the Mann-Whitney U statistic with average ranks for ties.
    """
    labels = labels.bool()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    order = torch.argsort(scores.double())
    _, counts = torch.unique_consecutive(scores.double()[order], return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    average_ranks = ends - (counts.double() - 1) / 2
    rank_of = torch.empty(len(order), dtype=torch.float64)
    rank_of[order] = torch.repeat_interleave(average_ranks, counts)
    u = rank_of[labels].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def brier_score(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """Return the mean squared error between probabilities and {0, 1} labels."""
    return float(((probabilities.double() - labels.double()) ** 2).mean())


def r2_score(predictions: torch.Tensor, targets: torch.Tensor) -> float | None:
    """Return the coefficient of determination, or `None` when the targets are constant."""
    targets = targets.double()
    total = float(((targets - targets.mean()) ** 2).sum())
    if total == 0:
        return None
    residual = float(((targets - predictions.double()) ** 2).sum())
    return 1 - residual / total


def critic_metrics(critic: LatentCritic, examples: CriticExamples) -> dict[str, Any]:
    """Return the critic's held-out metrics on `examples`.

    Keys: `auc` and `brier` of `p_safe` and `r2` of `v_task`, over all rows. `auc_not_violated`
    is the AUC over the rows with `z >= 0`, because at `z < 0` the label is 0 by definition,
    which makes the overall AUC easier. `auc_safety_state_only` and
    `auc_safety_state_only_not_violated` are the same AUCs with `z` itself as the score, a
    baseline the critic should beat. `rows`, `prompts` and `safe_rate` count the data.
    """
    if len(examples) == 0:
        return {"rows": 0}
    p_safe, v_task = critic.predict(examples.hidden, examples.safety_state)
    not_violated = examples.safety_state >= 0
    return {
        "auc": roc_auc(p_safe, examples.safe),
        "brier": brier_score(p_safe, examples.safe),
        "r2": r2_score(v_task, examples.reward),
        "auc_not_violated": roc_auc(p_safe[not_violated], examples.safe[not_violated]),
        "auc_safety_state_only": roc_auc(examples.safety_state, examples.safe),
        "auc_safety_state_only_not_violated": roc_auc(
            examples.safety_state[not_violated], examples.safe[not_violated]
        ),
        "rows": len(examples),
        "prompts": len(set(examples.prompt.tolist())),
        "safe_rate": float(examples.safe.mean()),
    }


# --- training -----------------------------------------------------------------------------------


def split_for_training(
    examples: CriticExamples, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[CriticExamples, CriticExamples]:
    """Return `(train, validation)` rows, split by prompt; test-split prompts are dropped.

    Prompts of the validation split form the validation set. When there are none, a seeded
    `validation_fraction` of the training prompts is held out instead (with a warning).

    Raises:
        ValueError: If no training rows remain.
    """
    test_rows = int(sum(split == "test" for split in examples.row_splits))
    if test_rows:
        logger.warning("Dropping %d rows of test-split prompts from critic training", test_rows)
    train = examples.in_splits(["train"])
    validation = examples.in_splits(["validation"])
    if len(validation) == 0 and len(train) > 0:
        used = sorted(set(train.prompt.tolist()))
        random.Random(seed).shuffle(used)
        held_out = max(1, round(len(used) * validation_fraction)) if len(used) > 1 else 0
        logger.warning(
            "No validation-split prompts in the data; holding out %d of %d training prompts",
            held_out,
            len(used),
        )
        validation = train.in_prompts(used[:held_out])
        train = train.in_prompts(used[held_out:])
    if len(train) == 0:
        msg = (
            "No training rows: the data contains no prompt of the train split. Collect data "
            "with `inferenceguard collect-critic-data --splits train validation`."
        )
        raise ValueError(msg)
    return train, validation


def train_critic(
    examples: CriticExamples,
    card: CriticCard,
    settings: TrainingSettings | None = None,
    *,
    progress: bool = True,
) -> LatentCritic:
    """Train a critic on `examples` and return it, with metrics and settings in its card.

    Args:
        examples: Collected rows; split by prompt with `split_for_training`.
        card: Metadata of the new critic (base model, cost model, budget, ...). Its
            `hidden_dims`, `dropout`, reward statistics, `training` and `metrics` are filled in.
        settings: Optimisation settings.
        progress: Show a progress bar over epochs.

    Raises:
        ValueError: If the rows do not match `card.hidden_size` or no training rows remain.
    """
    settings = settings or TrainingSettings()
    if examples.hidden.shape[1] != card.hidden_size:
        msg = (
            f"The data has hidden size {examples.hidden.shape[1]}, but the critic card says "
            f"{card.hidden_size}."
        )
        raise ValueError(msg)
    train, validation = split_for_training(examples, settings.validation_fraction, settings.seed)

    torch.manual_seed(settings.seed)
    reward_std = float(train.reward.std()) if len(train) > 1 else 1.0
    card.reward_mean = float(train.reward.mean())
    card.reward_std = reward_std if math.isfinite(reward_std) and reward_std > 1e-6 else 1.0
    card.hidden_dims = tuple(settings.hidden_dims)
    card.dropout = settings.dropout
    critic = LatentCritic(card)

    optimizer = torch.optim.AdamW(
        critic.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    generator = torch.Generator().manual_seed(settings.seed)
    best_loss, best_epoch, best_state = math.inf, 0, critic.state_dict()
    started = time.perf_counter()
    epochs = tqdm(range(1, settings.epochs + 1), desc="train critic", disable=not progress)
    for epoch in epochs:
        critic.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            loss = _loss(critic, train, batch, settings.value_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        held_out = validation if len(validation) else train
        validation_loss = _evaluate_loss(critic, held_out, settings.value_weight)
        epochs.set_postfix(validation_loss=f"{validation_loss:.4f}")
        if validation_loss < best_loss - 1e-6:
            best_loss, best_epoch = validation_loss, epoch
            best_state = {k: v.detach().clone() for k, v in critic.state_dict().items()}
        elif epoch - best_epoch >= settings.patience:
            logger.info("Early stopping at epoch %d (best epoch %d)", epoch, best_epoch)
            break

    critic.load_state_dict(best_state)
    critic.eval()
    card.training = {
        **card.training,
        "settings": {**asdict(settings), "hidden_dims": list(settings.hidden_dims)},
        "best_epoch": best_epoch,
        "epochs_run": epoch,
        "train": train.summary(),
        "validation": validation.summary(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    card.metrics = {"validation": critic_metrics(critic, validation)}
    logger.info("Trained critic: validation metrics %s", card.metrics["validation"])
    return critic


def _loss(
    critic: LatentCritic, data: CriticExamples, rows: torch.Tensor, value_weight: float
) -> torch.Tensor:
    logits, task = critic(data.hidden[rows], data.safety_state[rows])
    target = (data.reward[rows] - critic.card.reward_mean) / critic.card.reward_std
    safety_loss = functional.binary_cross_entropy_with_logits(logits, data.safe[rows])
    return safety_loss + value_weight * functional.mse_loss(task, target)


@torch.no_grad()
def _evaluate_loss(critic: LatentCritic, data: CriticExamples, value_weight: float) -> float:
    critic.eval()
    rows = torch.arange(len(data))
    return float(_loss(critic, data, rows, value_weight))


# --- command line -------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of `inferenceguard train-critic`."""
    defaults = TrainingSettings()
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="Folder written by `inferenceguard collect-critic-data`.",
    )
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="Folder for critic.safetensors and critic.json. The shipped default critic lives "
        f"in {DEFAULT_CRITIC_DIR}.",
    )
    parser.add_argument("--name", default="latent-critic", help="Critic name shown in reports.")
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="Divisor of the safety state z in the critic input. Default: the standard deviation "
        "of z in the data.",
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="Maximum epochs.")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="Early stopping: epochs without a lower validation loss.",
    )
    parser.add_argument(
        "--value-weight",
        type=float,
        default=defaults.value_weight,
        help="Weight of the reward head's MSE loss against the safety head's BCE loss.",
    )
    parser.add_argument(
        "--hidden-dims",
        type=int,
        nargs="+",
        default=list(defaults.hidden_dims),
        help="Widths of the MLP's hidden layers.",
    )
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")


def run(args: argparse.Namespace) -> int:
    """Train a critic from `args.data` and save it to `args.output`."""
    setup = read_setup(args.data)
    examples = load_examples(args.data)
    logger.info("Loaded %d rows from %s: %s", len(examples), args.data, examples.summary())
    scale = args.scale
    if scale is None:
        std = float(examples.safety_state.std()) if len(examples) > 1 else 1.0
        scale = std if math.isfinite(std) and std > 1e-6 else 1.0
    card = CriticCard(
        hidden_size=int(setup["hidden_size"]),
        layer=int(setup["layer"]),
        scale=float(scale),
        name=args.name,
        base_model=setup.get("base_model"),
        base_model_fingerprint=setup.get("base_model_fingerprint"),
        cost_model=setup.get("cost_model"),
        cost_model_threshold=setup.get("cost_model_threshold"),
        budget=setup.get("budget"),
        reward_model=setup.get("reward_model"),
        training={"data": {k: v for k, v in setup.items() if k != "format"}},
    )
    settings = TrainingSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        patience=args.patience,
        value_weight=args.value_weight,
        hidden_dims=tuple(args.hidden_dims),
        dropout=args.dropout,
        seed=args.seed,
    )
    critic = train_critic(examples, card, settings, progress=not args.no_progress)
    critic.save(args.output)
    print(f"Saved critic to {args.output}")
    for key, value in card.metrics["validation"].items():
        print(f"  validation {key}: {value}")
    return 0
