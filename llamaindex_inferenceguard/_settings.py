"""Validation of the guard settings the LlamaIndex adapter accepts per instance and per call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared_core.config import GuardConfig

# LlamaIndex and OpenAI-style names mapped onto GuardConfig fields.
SETTING_ALIASES: dict[str, str] = {"max_tokens": "max_new_tokens", "timeout": "time_limit_s"}

# GuardConfig fields that callers may not set: `extra` is report metadata, not a setting.
_RESERVED = frozenset({"extra"})


def valid_setting_names() -> list[str]:
    """Return every name `normalize_settings` accepts, aliases included, sorted."""
    return sorted((GuardConfig.field_names() - _RESERVED) | set(SETTING_ALIASES))


def normalize_settings(settings: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Map keyword arguments onto GuardConfig field names.

    `max_tokens` becomes `max_new_tokens`, `timeout` becomes `time_limit_s`, a single stop
    string becomes a list and `stop=None` an empty list. Values are validated later by the
    engine's `resolve_config`.

    Args:
        settings: Keyword arguments from a constructor or a call.
        where: The method name, used in error messages.

    Raises:
        TypeError: If a name is not a setting, or an alias and its field are both given.
    """
    fields = GuardConfig.field_names() - _RESERVED
    normalized: dict[str, Any] = {}
    unknown = []
    for key, value in settings.items():
        name = SETTING_ALIASES.get(key, key)
        if name not in fields:
            unknown.append(key)
            continue
        if name in normalized:
            msg = (
                f"InferenceGuardLLM.{where} got both {key!r} and another name for "
                f"{name!r}; pass only one of them."
            )
            raise TypeError(msg)
        if name == "stop":
            value = _stop_list(value)
        normalized[name] = value
    if unknown:
        msg = (
            f"InferenceGuardLLM.{where} got unknown keyword argument(s) {sorted(unknown)}. "
            f"Valid settings: {valid_setting_names()}."
        )
        raise TypeError(msg)
    return normalized


def _stop_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def config_settings(config: GuardConfig) -> dict[str, Any]:
    """Return every setting of `config` as keyword arguments for `resolve_config`."""
    data = config.to_dict()
    for name in _RESERVED:
        data.pop(name, None)
    return data
