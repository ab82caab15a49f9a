"""Mapping of LangChain chat-model parameters onto the engine's `GuardConfig` overrides."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from shared_core.config import GuardConfig

logger = logging.getLogger(__name__)

GREEDY_TEMPERATURE = 0.01
"""Sampling temperature used for `temperature=0`.

LangChain callers pass 0 to ask for greedy decoding, but the search samples several candidates
per block and `GuardConfig` requires a positive temperature. At 0.01 the sampler almost always
picks the most likely token; set `seed` for reproducible output."""

STANDARD_TO_CONFIG: dict[str, str] = {
    "temperature": "temperature",
    "max_tokens": "max_new_tokens",
    "top_p": "top_p",
    "stop": "stop",
    "seed": "seed",
    "timeout": "time_limit_s",
}
"""LangChain's standard parameter names and the `GuardConfig` fields they set."""

GUARD_SETTINGS: tuple[str, ...] = (
    "budget",
    "penalty",
    "block_size",
    "num_samples",
    "num_beams",
    "max_resample_rounds",
    "resample_penalty",
    "critic_threshold",
    "fast_path",
    "fast_path_margin",
    "fast_path_critic_margin",
    "fallback",
    "refusal_text",
    "context_overflow",
)
"""`GuardConfig` fields that the chat model exposes under their own names."""

PRESET_NAMES: tuple[str, ...] = ("fast", "balanced", "paper")

PRESET_FIELDS: tuple[str, ...] = tuple(
    sorted(
        name
        for name in GuardConfig.field_names() - {"extra"}
        if any(
            getattr(GuardConfig.preset(preset), name) != getattr(GuardConfig(), name)
            for preset in PRESET_NAMES
        )
    )
)
"""The search-shape fields that some preset sets (block size, samples, beams, fast path)."""

CONFIG_ALIASES: dict[str, str] = {
    "stop_sequences": "stop",
    "max_new_tokens": "max_tokens",
    "time_limit_s": "timeout",
}
"""Other accepted per-call names, mapped onto the chat model's parameter names."""

SETTING_NAMES: frozenset[str] = frozenset([*STANDARD_TO_CONFIG, *GUARD_SETTINGS, "preset"])
"""Every parameter name that sets part of the search configuration."""


def config_overrides(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Translate chat-model settings into `GuardConfig` overrides.

    A `preset` contributes its values of `PRESET_FIELDS` first, replacing the engine's own
    values of those fields; the other settings then apply on top. `None` values mean "not
    set" and are skipped.

    Args:
        settings: Parameter names from `SETTING_NAMES` and their values.

    Returns:
        Keyword arguments for `InferenceGuard.resolve_config` and the engine's generate calls.

    Raises:
        ValueError: If `preset` is not a preset name.
    """
    overrides: dict[str, Any] = {}
    preset = settings.get("preset")
    if preset is not None:
        if preset not in PRESET_NAMES:
            msg = f"Unknown preset={preset!r}. Use one of {PRESET_NAMES}."
            raise ValueError(msg)
        preset_config = GuardConfig.preset(preset)
        overrides.update({name: getattr(preset_config, name) for name in PRESET_FIELDS})

    for name, value in settings.items():
        if value is None or name == "preset":
            continue
        if name == "temperature" and value == 0:
            logger.debug("temperature=0 runs as temperature=%s (near-greedy)", GREEDY_TEMPERATURE)
            value = GREEDY_TEMPERATURE
        if name == "stop":
            value = (value,) if isinstance(value, str) else tuple(value)
        overrides[STANDARD_TO_CONFIG.get(name, name)] = value
    return overrides


def check_settings(settings: Mapping[str, Any]) -> None:
    """Validate each setting on its own, as `GuardConfig` would.

    Settings that constrain each other (`num_samples` must be a multiple of `num_beams`) are
    checked again in combination with the engine's configuration on every request.

    Raises:
        ValueError: If a value is invalid; the message names the setting and the rule.
    """
    for name, value in settings.items():
        for config_name, config_value in config_overrides({name: value}).items():
            try:
                _check_config_value(config_name, config_value)
            except ValueError as error:
                if config_name == name:
                    raise
                msg = f"Invalid {name}={value!r} (it sets GuardConfig.{config_name}): {error}"
                raise ValueError(msg) from error


def _check_config_value(name: str, value: Any) -> None:
    if name == "num_samples":
        GuardConfig(num_beams=1, num_samples=value)
    elif name == "num_beams":
        GuardConfig(num_beams=value, num_samples=value if isinstance(value, int) else 1)
    else:
        GuardConfig(**{name: value})


def normalise_call_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Map accepted aliases (`stop_sequences`, `max_new_tokens`, `time_limit_s`) to settings.

    Raises:
        TypeError: If an alias and its setting are both given.
    """
    normalised: dict[str, Any] = {}
    for name, value in kwargs.items():
        target = CONFIG_ALIASES.get(name, name)
        if target != name and target in kwargs:
            msg = f"Got both {name!r} and {target!r}; pass only {target!r}."
            raise TypeError(msg)
        normalised[target] = value
    return normalised
