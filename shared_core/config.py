"""Validated, immutable settings of the InferenceGuard search."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

FallbackPolicy = Literal["refuse", "raise", "best_effort"]
ContextOverflow = Literal["error", "truncate"]

FALLBACK_POLICIES: tuple[str, ...] = ("refuse", "raise", "best_effort")
CONTEXT_OVERFLOW_POLICIES: tuple[str, ...] = ("error", "truncate")
DEFAULT_REFUSAL_TEXT = "I can't help with that request."


@dataclass(frozen=True)
class GuardConfig:
    """Settings of one InferenceGuard search.

    The defaults are sized for a ~100M-parameter model on a laptop CPU. `GuardConfig.preset`
    gives named alternatives, including the settings of the InferenceGuard paper (7B models on
    a GPU). Every field is validated on construction, and `replace` returns a validated copy.

    Example:
        >>> config = GuardConfig.preset("fast").replace(max_new_tokens=64, seed=0)
        >>> config.num_samples, config.num_beams
        (4, 1)
    """

    budget: float | None = None
    """Safety budget `d`: a response is safe when its cost is at most `d`. `None` uses the cost
    model's own threshold."""

    penalty: float = 100.0
    """Penalty `n` of the augmented score: an unsafe candidate scores `-n - (cost - d)`, below
    every safe candidate as long as rewards stay within `(-n, n)`."""

    block_size: int = 16
    """Block length `w` in tokens: the cost model and critic run at every block boundary."""

    num_samples: int = 8
    """Candidates `N` sampled per block in the full search, spread evenly over the beams."""

    num_beams: int = 2
    """Beams `K` kept after each block. `num_samples` must be a multiple of it."""

    max_new_tokens: int = 128
    """Maximum number of new tokens `D` in the response."""

    max_resample_rounds: int = 2
    """Rounds `M` of logit penalty and resampling when every candidate of a block is unsafe."""

    resample_penalty: float = 5.0
    """Logit penalty subtracted from tokens over-represented in unsafe candidates, per round."""

    temperature: float = 0.7
    """Sampling temperature; 0 is not allowed because the search needs diverse candidates."""

    top_p: float = 0.95
    """Nucleus sampling mass in (0, 1]."""

    critic_threshold: float = 0.5
    """A candidate is safe only if the critic's `p_safe` is at least this (when a critic is
    loaded)."""

    fast_path: bool = True
    """Decode one beam block by block and branch into the full search only when the safety state
    or `p_safe` falls below the margins."""

    fast_path_margin: float = 0.1
    """The fast path branches when the safety state `z = d - cost` falls below this margin."""

    fast_path_critic_margin: float = 0.1
    """The fast path branches when `p_safe` falls below `critic_threshold` plus this margin."""

    fallback: FallbackPolicy = "refuse"
    """What the caller gets when no certified answer exists: the refusal text (`"refuse"`), a
    `SafetyViolationError` (`"raise"`) or the best uncertified answer (`"best_effort"`)."""

    refusal_text: str = DEFAULT_REFUSAL_TEXT
    """Text returned by the `"refuse"` fallback."""

    seed: int | None = None
    """Seed of the request's random generator; `None` draws a fresh seed per request."""

    time_limit_s: float | None = None
    """Wall-clock limit of one request in seconds; past it the fallback applies."""

    stop: tuple[str, ...] = ()
    """Stop strings: generation ends before the first occurrence, which is not returned."""

    context_overflow: ContextOverflow = "error"
    """On a prompt longer than the context window: raise (`"error"`), or drop the oldest
    non-system turns with a warning (`"truncate"`)."""

    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Free-form metadata carried into reports; never read by the search."""

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        self._validate()

    # --- validation -------------------------------------------------------------------------

    def _validate(self) -> None:
        if self.budget is not None:
            _check_finite("budget", self.budget)
        _check_finite("penalty", self.penalty)
        _check(self.penalty > 0, "penalty", "must be > 0", self.penalty)
        _check_int("block_size", self.block_size, minimum=1)
        _check_int("num_samples", self.num_samples, minimum=1)
        _check_int("num_beams", self.num_beams, minimum=1)
        _check(
            self.num_samples % self.num_beams == 0,
            "num_samples",
            f"must be a multiple of num_beams={self.num_beams}",
            self.num_samples,
        )
        _check_int("max_new_tokens", self.max_new_tokens, minimum=1)
        _check_int("max_resample_rounds", self.max_resample_rounds, minimum=0)
        _check_finite("resample_penalty", self.resample_penalty)
        _check(
            self.resample_penalty >= 0, "resample_penalty", "must be >= 0", self.resample_penalty
        )
        _check_finite("temperature", self.temperature)
        _check(self.temperature > 0, "temperature", "must be > 0", self.temperature)
        _check_finite("top_p", self.top_p)
        _check(0 < self.top_p <= 1, "top_p", "must be in (0, 1]", self.top_p)
        _check_finite("critic_threshold", self.critic_threshold)
        _check(
            0 <= self.critic_threshold <= 1,
            "critic_threshold",
            "must be in [0, 1]",
            self.critic_threshold,
        )
        _check(isinstance(self.fast_path, bool), "fast_path", "must be a bool", self.fast_path)
        _check_finite("fast_path_margin", self.fast_path_margin)
        _check(
            self.fast_path_margin >= 0, "fast_path_margin", "must be >= 0", self.fast_path_margin
        )
        _check_finite("fast_path_critic_margin", self.fast_path_critic_margin)
        _check(
            self.fast_path_critic_margin >= 0,
            "fast_path_critic_margin",
            "must be >= 0",
            self.fast_path_critic_margin,
        )
        _check(
            self.fallback in FALLBACK_POLICIES,
            "fallback",
            f"must be one of {FALLBACK_POLICIES}",
            self.fallback,
        )
        _check(
            isinstance(self.refusal_text, str) and bool(self.refusal_text.strip()),
            "refusal_text",
            "must be a non-empty string",
            self.refusal_text,
        )
        if self.seed is not None:
            _check_int("seed", self.seed, minimum=0)
        if self.time_limit_s is not None:
            _check_finite("time_limit_s", self.time_limit_s)
            _check(self.time_limit_s > 0, "time_limit_s", "must be > 0 or None", self.time_limit_s)
        _check(
            all(isinstance(s, str) and s for s in self.stop),
            "stop",
            "must contain only non-empty strings",
            self.stop,
        )
        _check(
            self.context_overflow in CONTEXT_OVERFLOW_POLICIES,
            "context_overflow",
            f"must be one of {CONTEXT_OVERFLOW_POLICIES}",
            self.context_overflow,
        )

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> frozenset[str]:
        """Return the names of the settings that `replace` and per-call overrides accept."""
        return frozenset(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> GuardConfig:
        """Return a validated copy with `changes` applied.

        Raises:
            TypeError: If a key is not a setting of `GuardConfig`.
            ValueError: If a new value is invalid.
        """
        unknown = sorted(set(changes) - self.field_names())
        if unknown:
            msg = (
                f"Unknown GuardConfig setting(s) {unknown}. "
                f"Valid settings: {sorted(self.field_names())}."
            )
            raise TypeError(msg)
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **changes: Any) -> GuardConfig:
        """Return the named preset, with `changes` applied.

        Presets:
            `"fast"`: one beam of four candidates and the fast path, for interactive use on a CPU.
            `"balanced"`: the defaults (eight candidates, two beams, the fast path).
            `"paper"`: the InferenceGuard paper's settings for 7B models on a GPU
                (w=32, N=128, K=N/4, M=2, D=128), without the fast path.

        Raises:
            ValueError: If `name` is not a preset.
        """
        presets: dict[str, dict[str, Any]] = {
            "fast": {"block_size": 16, "num_samples": 4, "num_beams": 1, "fast_path": True},
            "balanced": {},
            "paper": {
                "block_size": 32,
                "num_samples": 128,
                "num_beams": 32,
                "max_resample_rounds": 2,
                "max_new_tokens": 128,
                "fast_path": False,
            },
        }
        if name not in presets:
            msg = f"Unknown preset {name!r}. Choose one of {sorted(presets)}."
            raise ValueError(msg)
        return cls(**{**presets[name], **changes})

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain JSON values."""
        data = dataclasses.asdict(self)
        data["stop"] = list(self.stop)
        return data

    @property
    def candidates_per_beam(self) -> int:
        """Number of continuations `N / K` sampled from each live beam."""
        return self.num_samples // self.num_beams


def _check(condition: bool, name: str, rule: str, value: object) -> None:
    if not condition:
        msg = f"Invalid GuardConfig.{name}={value!r}: {rule}."
        raise ValueError(msg)


def _check_finite(name: str, value: object) -> None:
    _check(
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
        name,
        "must be a finite number",
        value,
    )


def _check_int(name: str, value: object, *, minimum: int) -> None:
    _check(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        name,
        f"must be an integer >= {minimum}",
        value,
    )
