"""GuardConfig: validation of every field, presets and replace."""

from __future__ import annotations

import pytest

from shared_core.config import GuardConfig

INVALID_VALUES = [
    ("budget", float("nan"), "finite"),
    ("budget", "0.5", "finite"),
    ("penalty", 0.0, "> 0"),
    ("penalty", float("inf"), "finite"),
    ("block_size", 0, "integer >= 1"),
    ("block_size", 2.5, "integer >= 1"),
    ("block_size", True, "integer >= 1"),
    ("num_samples", 0, "integer >= 1"),
    ("num_beams", 0, "integer >= 1"),
    ("max_new_tokens", 0, "integer >= 1"),
    ("max_resample_rounds", -1, "integer >= 0"),
    ("resample_penalty", -1.0, ">= 0"),
    ("temperature", 0.0, "> 0"),
    ("temperature", float("nan"), "finite"),
    ("top_p", 0.0, "(0, 1]"),
    ("top_p", 1.5, "(0, 1]"),
    ("critic_threshold", 1.5, "[0, 1]"),
    ("fast_path", 1, "bool"),
    ("fast_path_margin", -0.1, ">= 0"),
    ("fast_path_critic_margin", -0.1, ">= 0"),
    ("fallback", "ignore", "one of"),
    ("refusal_text", "  ", "non-empty"),
    ("seed", -1, "integer >= 0"),
    ("seed", 1.0, "integer >= 0"),
    ("time_limit_s", 0.0, "> 0"),
    ("stop", ("",), "non-empty strings"),
    ("stop", (3,), "non-empty strings"),
    ("context_overflow", "drop", "one of"),
]


@pytest.mark.parametrize(("name", "value", "rule"), INVALID_VALUES)
def test_config_invalid_value_names_field_rule_value(name, value, rule):
    with pytest.raises(ValueError) as caught:
        GuardConfig(**{name: value})
    message = str(caught.value)
    assert f"GuardConfig.{name}=" in message
    assert rule in message
    assert repr(value) in message


def test_config_samples_must_divide_by_beams():
    with pytest.raises(ValueError, match=r"num_samples.*multiple of num_beams=3"):
        GuardConfig(num_samples=8, num_beams=3)


def test_config_defaults_are_valid():
    config = GuardConfig()
    assert config.candidates_per_beam == config.num_samples // config.num_beams
    assert config.fallback == "refuse"


def test_config_stop_string_becomes_tuple():
    assert GuardConfig(stop="\n").stop == ("\n",)
    assert GuardConfig(stop=["a", "b"]).stop == ("a", "b")


def test_config_replace_validates_and_copies():
    config = GuardConfig()
    changed = config.replace(max_new_tokens=7, seed=3)
    assert (changed.max_new_tokens, changed.seed) == (7, 3)
    assert config.max_new_tokens == 128
    with pytest.raises(ValueError, match="max_new_tokens"):
        config.replace(max_new_tokens=0)


def test_config_replace_unknown_name_is_type_error():
    with pytest.raises(TypeError, match="max_tokens"):
        GuardConfig().replace(max_tokens=5)


@pytest.mark.parametrize("name", ["fast", "balanced", "paper"])
def test_config_presets_are_valid(name):
    config = GuardConfig.preset(name, seed=1)
    assert config.seed == 1
    assert config.num_samples % config.num_beams == 0


def test_config_paper_preset_values():
    config = GuardConfig.preset("paper")
    assert (config.block_size, config.num_samples, config.num_beams) == (32, 128, 32)
    assert (config.max_resample_rounds, config.max_new_tokens) == (2, 128)
    assert config.fast_path is False


def test_config_unknown_preset():
    with pytest.raises(ValueError, match="Unknown preset 'slow'"):
        GuardConfig.preset("slow")


def test_config_to_dict_is_plain_json():
    data = GuardConfig(stop=("x",)).to_dict()
    assert data["stop"] == ["x"]
    assert data["fallback"] == "refuse"
