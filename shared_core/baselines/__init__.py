"""Decoding methods compared by `inferenceguard bench`, all built on one engine's primitives.

Every method reuses the engine's language model wrapper (prefill, batched block sampling, the
KV cache), its logits processors, cost model, reward model, critic and settings, so differences
in the benchmark come from the decoding rule alone.

Methods (`METHOD_NAMES`, in benchmark order):
    `plain`: one sample from the base model.
    `filter_after`: plain sampling, then the cost model, then the refusal fallback.
    `best_of_n_lagrangian`, `best_of_n_augmented`: the best of `N` samples by `R - lambda * C`
        or by the augmented score.
    `beam_lagrangian`, `beam_augmented`: block beam search ranked by those scores.
    `args_reward`, `args_lagrangian`, `args_cost`: ARGS token-level guidance by `R`,
        `R - lambda * C` or `-C`.
    `re_control`: gradient ascent on the last hidden state against the critic (RE-Control).
    `inferenceguard_no_critic`, `inferenceguard_critic`: the full search without and with the
        critic, without the fast path.
    `inferenceguard_fast_path`: the engine's fast path, with the critic when there is one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared_core.baselines.args import ARGS
from shared_core.baselines.base import DecodingMethod, MethodOutput
from shared_core.baselines.beam import BlockBeamSearch
from shared_core.baselines.guard_methods import GuardSearch
from shared_core.baselines.recontrol import REControl
from shared_core.baselines.sampling import BestOfN, FilterAfter, PlainSampling

if TYPE_CHECKING:
    from shared_core.config import GuardConfig
    from shared_core.engine import InferenceGuard

__all__ = [
    "ARGS",
    "CRITIC_METHODS",
    "METHOD_NAMES",
    "REWARD_METHODS",
    "BaselineSettings",
    "BestOfN",
    "BlockBeamSearch",
    "DecodingMethod",
    "FilterAfter",
    "GuardSearch",
    "MethodOutput",
    "PlainSampling",
    "REControl",
    "build_method",
    "build_methods",
]


@dataclass(frozen=True)
class BaselineSettings:
    """Settings of the baselines that the engine's `GuardConfig` does not cover.

    The defaults are fixed before any benchmark run and are not tuned on benchmark prompts.
    """

    lagrange_multiplier: float = 1.0
    """`lambda` of the Lagrangian score `R - lambda * C`, in reward units per unit of cost."""

    args_weight: float = 1.0
    """ARGS weight `w` of the guidance score against the logits."""

    args_top_k: int = 10
    """ARGS candidate tokens scored per step."""

    recontrol_steps: int = 4
    """RE-Control Adam steps per token."""

    recontrol_step_size: float = 0.05
    """RE-Control Adam learning rate, relative to the hidden state's root mean square."""

    recontrol_safety_weight: float = 1.0
    """RE-Control weight of `log p_safe` against `v_task`."""

    def __post_init__(self) -> None:
        for name in (
            "lagrange_multiplier",
            "args_weight",
            "recontrol_step_size",
            "recontrol_safety_weight",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                msg = f"Invalid BaselineSettings.{name}={value!r}: must be a finite number >= 0."
                raise ValueError(msg)
        for name, minimum in (("args_top_k", 1), ("recontrol_steps", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                msg = f"Invalid BaselineSettings.{name}={value!r}: must be an integer >= {minimum}."
                raise ValueError(msg)


Builder = Callable[["InferenceGuard", BaselineSettings, "GuardConfig | None"], DecodingMethod]

_BUILDERS: dict[str, Builder] = {
    "plain": lambda g, s, c: PlainSampling(g, c),
    "filter_after": lambda g, s, c: FilterAfter(g, c),
    "best_of_n_lagrangian": lambda g, s, c: BestOfN(
        g, objective="lagrangian", lagrange_multiplier=s.lagrange_multiplier, config=c
    ),
    "best_of_n_augmented": lambda g, s, c: BestOfN(g, objective="augmented", config=c),
    "beam_lagrangian": lambda g, s, c: BlockBeamSearch(
        g, objective="lagrangian", lagrange_multiplier=s.lagrange_multiplier, config=c
    ),
    "beam_augmented": lambda g, s, c: BlockBeamSearch(g, objective="augmented", config=c),
    "args_reward": lambda g, s, c: ARGS(
        g, guidance="reward", weight=s.args_weight, top_k=s.args_top_k, config=c
    ),
    "args_lagrangian": lambda g, s, c: ARGS(
        g,
        guidance="lagrangian",
        weight=s.args_weight,
        top_k=s.args_top_k,
        lagrange_multiplier=s.lagrange_multiplier,
        config=c,
    ),
    "args_cost": lambda g, s, c: ARGS(
        g, guidance="cost", weight=s.args_weight, top_k=s.args_top_k, config=c
    ),
    "re_control": lambda g, s, c: REControl(
        g,
        steps=s.recontrol_steps,
        step_size=s.recontrol_step_size,
        safety_weight=s.recontrol_safety_weight,
        config=c,
    ),
    "inferenceguard_no_critic": lambda g, s, c: GuardSearch(
        g, use_critic=False, fast_path=False, name="inferenceguard_no_critic", config=c
    ),
    "inferenceguard_critic": lambda g, s, c: GuardSearch(
        g, use_critic=True, fast_path=False, name="inferenceguard_critic", config=c
    ),
    "inferenceguard_fast_path": lambda g, s, c: GuardSearch(
        g,
        use_critic=g.critic is not None,
        fast_path=True,
        name="inferenceguard_fast_path",
        config=c,
    ),
}

METHOD_NAMES: tuple[str, ...] = tuple(_BUILDERS)
"""Every method, in benchmark order."""

CRITIC_METHODS: frozenset[str] = frozenset({"re_control", "inferenceguard_critic"})
"""Methods that need a critic."""

REWARD_METHODS: frozenset[str] = frozenset(
    {
        "best_of_n_lagrangian",
        "best_of_n_augmented",
        "beam_lagrangian",
        "beam_augmented",
        "args_reward",
        "args_lagrangian",
    }
)
"""Methods that need a reward model."""


def build_method(
    name: str,
    guard: InferenceGuard,
    settings: BaselineSettings | None = None,
    config: GuardConfig | None = None,
) -> DecodingMethod:
    """Return the method `name` on `guard`'s model and scorers.

    Args:
        name: One of `METHOD_NAMES`.
        guard: The engine that provides the model, tokenizer, cost model, reward model, critic
            and default settings.
        settings: Baseline settings; defaults to `BaselineSettings()`.
        config: Engine settings for the method; defaults to `guard.config`.

    Raises:
        ValueError: If `name` is unknown, or the method needs a reward model or critic that
            `guard` lacks.
    """
    if name not in _BUILDERS:
        msg = f"Unknown method {name!r}: use one of {list(METHOD_NAMES)}."
        raise ValueError(msg)
    return _BUILDERS[name](guard, settings or BaselineSettings(), config)


def build_methods(
    names: Sequence[str],
    guard: InferenceGuard,
    settings: BaselineSettings | None = None,
    config: GuardConfig | None = None,
) -> dict[str, DecodingMethod]:
    """Return `{name: method}` for `names`, in order; errors as in `build_method`."""
    duplicates = sorted({name for name in names if list(names).count(name) > 1})
    if duplicates:
        msg = f"Methods {duplicates} are listed more than once; list each method once."
        raise ValueError(msg)
    return {name: build_method(name, guard, settings, config) for name in names}
