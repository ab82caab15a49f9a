"""The latent critic network, its card, the fingerprint check, the data store and training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import make_model, make_tokenizer

from shared_core.critic import (
    CARD_FILE,
    WEIGHTS_FILE,
    CriticCard,
    CriticCompatibilityError,
    LatentCritic,
    load_critic,
    model_fingerprint,
)
from shared_core.critic_base import Critic
from shared_core.critic_store import (
    CriticExamples,
    PromptInfo,
    ShardWriter,
    finished_prompt_ids,
    load_examples,
    write_setup,
)
from shared_core.critic_training import (
    TrainingSettings,
    brier_score,
    r2_score,
    roc_auc,
    split_for_training,
    train_critic,
)

HIDDEN = 16


def _synthetic_examples(prompts_per_split: int = 40, seed: int = 0) -> CriticExamples:
    """Rows whose safety label and reward depend on the hidden state, with prompt groups."""
    generator = torch.Generator().manual_seed(seed)
    splits = (
        ["train"] * prompts_per_split
        + ["validation"] * (prompts_per_split // 2)
        + ["test"] * (prompts_per_split // 4)
    )
    prompts = [PromptInfo(f"p{i}", s, "harmful", "synthetic") for i, s in enumerate(splits)]
    rows_per_prompt = 12
    count = len(prompts) * rows_per_prompt
    hidden = torch.randn(count, HIDDEN, generator=generator) * 5 + 3
    direction = torch.randn(HIDDEN, generator=generator)
    normalised = (hidden - hidden.mean(-1, keepdim=True)) / hidden.std(-1, keepdim=True)
    z = torch.rand(count, generator=generator) - 0.2
    logit = 3 * normalised @ direction / HIDDEN**0.5 + 4 * z
    safe = ((torch.rand(count, generator=generator) < torch.sigmoid(logit)) & (z >= 0)).float()
    reward = normalised[:, 0] * 2 + 0.1 * torch.randn(count, generator=generator)
    return CriticExamples(
        hidden=hidden,
        safety_state=z,
        safe=safe,
        reward=reward,
        prompt=torch.arange(len(prompts)).repeat_interleave(rows_per_prompt),
        sample=torch.arange(count) % 4,
        block=torch.arange(count) % 3,
        prompts=prompts,
    )


def test_critic_follows_protocol() -> None:
    critic = LatentCritic(CriticCard(hidden_size=HIDDEN))
    assert isinstance(critic, Critic)
    assert critic.layer == -1
    assert critic.scale == 1.0


def test_predict_shapes_and_absorbing_state() -> None:
    critic = LatentCritic(CriticCard(hidden_size=HIDDEN, hidden_dims=(8,)))
    hidden = torch.randn(5, HIDDEN, dtype=torch.bfloat16)
    z = torch.tensor([0.3, 0.0, -0.01, -2.0, 1.0])
    p_safe, v_task = critic.predict(hidden, z)

    assert p_safe.shape == (5,)
    assert v_task.shape == (5,)
    assert p_safe.dtype == torch.float32
    assert torch.all(p_safe[2:4] == 0)
    assert torch.all(p_safe[[0, 1, 4]] > 0)
    assert torch.all((p_safe >= 0) & (p_safe <= 1))


def test_predict_rejects_wrong_shapes() -> None:
    critic = LatentCritic(CriticCard(hidden_size=HIDDEN))
    with pytest.raises(ValueError, match=f"expects hidden states of shape \\(batch, {HIDDEN}\\)"):
        critic.predict(torch.randn(2, HIDDEN + 1), torch.zeros(2))
    with pytest.raises(ValueError, match="counts must match"):
        critic.predict(torch.randn(2, HIDDEN), torch.zeros(3))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"scale": 0.0}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"hidden_dims": (4, 0)}, "hidden_dims"),
        ({"dropout": 1.0}, "dropout"),
        ({"format": 99}, "Unsupported critic card format"),
    ],
)
def test_card_rejects_invalid_values(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CriticCard(**{"hidden_size": HIDDEN, **changes})


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = make_model(make_tokenizer(), hidden_size=32)
    card = CriticCard(
        hidden_size=32,
        layer=-2,
        scale=0.25,
        name="round-trip",
        base_model=model.name_or_path,
        base_model_fingerprint=model_fingerprint(model),
        cost_model="banned-words",
        budget=0.5,
        reward_mean=1.5,
        reward_std=2.0,
        metrics={"validation": {"auc": 0.9}},
    )
    critic = LatentCritic(card)
    critic.save(tmp_path)

    stored = json.loads((tmp_path / CARD_FILE).read_text())
    assert stored["base_model_fingerprint"] == card.base_model_fingerprint
    assert stored["hidden_size"] == 32
    assert stored["layer"] == -2
    assert stored["cost_model"] == "banned-words"
    assert set(load_file(str(tmp_path / WEIGHTS_FILE))) == set(critic.state_dict())

    loaded = load_critic(tmp_path, model)
    hidden, z = torch.randn(4, 32), torch.tensor([0.1, 0.2, -0.3, 0.4])
    expected, actual = critic.predict(hidden, z), loaded.predict(hidden, z)
    assert torch.allclose(expected[0], actual[0])
    assert torch.allclose(expected[1], actual[1])
    assert loaded.card.metrics == {"validation": {"auc": 0.9}}
    assert loaded.scale == 0.25


def test_load_rejects_other_model(tmp_path: Path) -> None:
    tokenizer = make_tokenizer()
    trained_for = make_model(tokenizer, seed=0)
    card = CriticCard(
        hidden_size=32, base_model="tiny", base_model_fingerprint=model_fingerprint(trained_for)
    )
    LatentCritic(card).save(tmp_path)

    with pytest.raises(CriticCompatibilityError, match="fingerprint"):
        load_critic(tmp_path, make_model(tokenizer, seed=1))
    with pytest.raises(CriticCompatibilityError, match="hidden size 48"):
        load_critic(tmp_path, make_model(tokenizer, hidden_size=48))
    assert load_critic(tmp_path, trained_for).card.base_model == "tiny"


def test_load_rejects_layer_out_of_range(tmp_path: Path) -> None:
    model = make_model(make_tokenizer(), num_layers=2)
    LatentCritic(CriticCard(hidden_size=32, layer=5)).save(tmp_path)
    with pytest.raises(CriticCompatibilityError, match="returns 3 hidden states"):
        load_critic(tmp_path, model)


def test_load_reports_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=CARD_FILE):
        load_critic(tmp_path)
    LatentCritic(CriticCard(hidden_size=8)).save(tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        load_critic(tmp_path)


def test_load_rejects_weights_of_other_shape(tmp_path: Path) -> None:
    LatentCritic(CriticCard(hidden_size=8, hidden_dims=(4,))).save(tmp_path)
    card = json.loads((tmp_path / CARD_FILE).read_text())
    card["hidden_dims"] = [6]
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ValueError, match="do not match the card"):
        load_critic(tmp_path)


def test_fingerprint_tracks_weights_not_dtype() -> None:
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, seed=0)
    same = make_model(tokenizer, seed=0)
    first = model_fingerprint(model)

    assert first.startswith("sha256:")
    assert model_fingerprint(same) == first
    assert model_fingerprint(make_model(tokenizer, seed=2)) != first
    assert model_fingerprint(same.to(torch.bfloat16)) == first

    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0  # the first element is always in the sample
    assert model_fingerprint(model) != first


def test_fingerprint_tracks_config() -> None:
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    first = model_fingerprint(model)
    model.config.rope_parameters = {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}
    assert model_fingerprint(model) != first


# --- metrics ------------------------------------------------------------------------------------


def test_metric_functions() -> None:
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert roc_auc(torch.tensor([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert roc_auc(torch.tensor([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(torch.tensor([0.5, 0.5, 0.5, 0.5]), labels) == 0.5
    assert roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1.0, 1.0])) is None
    assert brier_score(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])) == 0.5
    assert r2_score(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0])) == 1.0
    assert r2_score(torch.tensor([1.0, 2.0]), torch.tensor([4.0, 4.0])) is None


# --- data store -----------------------------------------------------------------------------------


def _rows(count: int, prompt_count: int) -> dict[str, torch.Tensor]:
    return {
        "hidden": torch.randn(count, HIDDEN),
        "safety_state": torch.linspace(-1, 1, count),
        "safe": (torch.arange(count) % 2).float(),
        "reward": torch.arange(count).float(),
        "prompt": torch.arange(count) % prompt_count,
        "sample": torch.zeros(count, dtype=torch.int64),
        "block": torch.arange(count),
    }


def test_store_round_trip_and_resume(tmp_path: Path) -> None:
    write_setup(tmp_path, {"hidden_size": HIDDEN, "layer": -1, "budget": 0.5})
    first = [
        PromptInfo("a", "train", "harmful", "s1"),
        PromptInfo("b", "validation", "benign", "s2"),
    ]
    second = [PromptInfo("c", "train", "benign", "s2")]
    writer = ShardWriter(tmp_path, rank=0)
    writer.write(first, _rows(6, 2))
    ShardWriter(tmp_path, rank=1).write(second, _rows(3, 1))

    assert finished_prompt_ids(tmp_path) == {"a", "b", "c"}
    examples = load_examples(tmp_path)
    assert len(examples) == 9
    assert [p.id for p in examples.prompts] == ["a", "b", "c"]
    assert examples.prompt.tolist() == [0, 1, 0, 1, 0, 1, 2, 2, 2]
    assert len(examples.in_splits(["validation"])) == 3
    assert examples.summary()["prompts_by_kind"] == {"benign": 2, "harmful": 1}

    # A new writer for rank 0 continues the shard numbering instead of overwriting.
    assert ShardWriter(tmp_path, rank=0).next_index == 1


def test_store_skips_truncated_manifest_line(tmp_path: Path) -> None:
    write_setup(tmp_path, {"hidden_size": HIDDEN, "layer": -1})
    writer = ShardWriter(tmp_path)
    writer.write([PromptInfo("a", "train", "harmful", "s")], _rows(2, 1))
    with writer.manifest.open("a") as handle:
        handle.write('{"file": "shard-r0-00001.saf')
    assert finished_prompt_ids(tmp_path) == {"a"}
    assert len(load_examples(tmp_path)) == 2


def test_store_rejects_other_setup(tmp_path: Path) -> None:
    write_setup(tmp_path, {"hidden_size": HIDDEN, "layer": -1, "budget": 0.5})
    write_setup(tmp_path, {"hidden_size": HIDDEN, "layer": -1, "budget": 0.5})
    with pytest.raises(ValueError, match="another setup"):
        write_setup(tmp_path, {"hidden_size": HIDDEN, "layer": -1, "budget": 0.7})


def test_store_rejects_mismatched_rows(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path)
    rows = _rows(4, 1)
    rows["reward"] = torch.zeros(3)
    with pytest.raises(ValueError, match="different row counts"):
        writer.write([PromptInfo("a", "train", "harmful", "s")], rows)
    del rows["reward"]
    with pytest.raises(ValueError, match="missing tensors"):
        writer.write([PromptInfo("a", "train", "harmful", "s")], rows)


def test_load_examples_requires_shards(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a critic data folder"):
        load_examples(tmp_path)
    write_setup(tmp_path, {"hidden_size": HIDDEN, "layer": -1})
    with pytest.raises(ValueError, match="no finished shard"):
        load_examples(tmp_path)


# --- training -----------------------------------------------------------------------------------


def test_training_split_by_prompt() -> None:
    examples = _synthetic_examples()
    train, validation = split_for_training(examples)
    train_prompts = set(train.prompt.tolist())
    validation_prompts = set(validation.prompt.tolist())

    assert not train_prompts & validation_prompts
    assert {examples.prompts[i].split for i in train_prompts} == {"train"}
    assert {examples.prompts[i].split for i in validation_prompts} == {"validation"}


def test_split_for_training_holds_out_train_prompts() -> None:
    examples = _synthetic_examples().in_splits(["train"])
    train, validation = split_for_training(examples, validation_fraction=0.25, seed=1)
    assert len(set(validation.prompt.tolist())) == 10
    assert not set(train.prompt.tolist()) & set(validation.prompt.tolist())


def test_split_for_training_requires_train_rows() -> None:
    with pytest.raises(ValueError, match="no prompt of the train split"):
        split_for_training(_synthetic_examples().in_splits(["test"]))


def test_train_critic_learns_synthetic_signal() -> None:
    examples = _synthetic_examples()
    card = CriticCard(hidden_size=HIDDEN, scale=0.5, name="synthetic")
    settings = TrainingSettings(epochs=60, batch_size=64, hidden_dims=(32,), patience=10)
    critic = train_critic(examples, card, settings, progress=False)

    metrics = critic.card.metrics["validation"]
    assert metrics["auc"] > 0.85
    assert metrics["auc_not_violated"] > 0.7
    assert metrics["auc_not_violated"] > metrics["auc_safety_state_only_not_violated"]
    assert metrics["brier"] < 0.2
    assert metrics["r2"] > 0.7
    assert metrics["prompts"] == 20
    assert critic.card.training["train"]["prompts"] == 40
    assert critic.card.training["best_epoch"] >= 1
    assert abs(critic.card.reward_mean - float(examples.in_splits(["train"]).reward.mean())) < 1e-4


def test_train_critic_is_seeded() -> None:
    examples = _synthetic_examples(prompts_per_split=12)
    settings = TrainingSettings(epochs=3, hidden_dims=(8,), seed=5)
    first = train_critic(examples, CriticCard(hidden_size=HIDDEN), settings, progress=False)
    second = train_critic(examples, CriticCard(hidden_size=HIDDEN), settings, progress=False)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name


def test_train_critic_rejects_wrong_hidden_size() -> None:
    with pytest.raises(ValueError, match="hidden size 16"):
        train_critic(_synthetic_examples(), CriticCard(hidden_size=8), progress=False)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"learning_rate": float("inf")}, "learning_rate"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
    ],
)
def test_training_settings_reject_invalid_values(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainingSettings(**changes)
