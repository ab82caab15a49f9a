"""What a guarded request returns: the text, its usage and the guarantee report."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "content_filter"]
FallbackReason = Literal[
    "no_safe_candidate",
    "cost_model_error",
    "reward_model_error",
    "critic_error",
    "time_limit",
    "final_check",
]


@dataclass
class SearchStats:
    """Counters and timings of one search."""

    blocks: int = 0
    """Blocks decoded, counting the fast path's blocks and every resampled block once."""

    candidates_sampled: int = 0
    """Candidate continuations sampled over all blocks and resample rounds."""

    resample_rounds: int = 0
    """Blocks re-sampled with the unsafe-token logit penalty."""

    cost_calls: int = 0
    """Texts scored by the cost model."""

    reward_calls: int = 0
    """Texts scored by the reward model."""

    critic_calls: int = 0
    """Hidden states scored by the critic."""

    fast_path_blocks: int = 0
    """Blocks decoded by the single-beam fast path before any branching."""

    branched: bool = False
    """Whether the fast path branched into the full search."""

    seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds per phase: `prefill`, `sampling`, `cost`, `reward`, `critic`, `total`."""

    def add_time(self, phase: str, seconds: float) -> None:
        """Add `seconds` to the time spent in `phase`."""
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds


@dataclass
class GuaranteeReport:
    """The safety claim of one response, with respect to one cost model at one budget.

    `certified` is true only if the cost model scored the exact returned text within the budget
    and every prefix streamed before it was checked. It says nothing about harms that the cost
    model does not measure.
    """

    certified: bool
    cost_model: str
    budget: float
    final_cost: float | None
    """Cost of the returned text; `None` when the fallback text was returned or scoring failed."""

    min_safety_state: float | None
    """Minimum of `z_k = budget - cost(prefix_k)` over the block prefixes of the returned text."""

    fallback: str | None = None
    """The fallback policy used (`"refuse"`, `"raise"` or `"best_effort"`), or `None`."""

    fallback_reason: FallbackReason | None = None
    """Why the fallback was used."""

    error: str | None = None
    """The error message behind a `cost_model_error`, `reward_model_error` or `critic_error`
    fallback, or the time limit behind a `time_limit` fallback."""

    reward_model: str | None = None
    critic: str | None = None
    stats: SearchStats = field(default_factory=SearchStats)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON values (no tensors, NaN or infinity)."""
        return _jsonable(dataclasses.asdict(self))

    @property
    def claim(self) -> str:
        """Return the safety claim in words."""
        if not self.certified:
            return f"not certified with respect to cost model {self.cost_model!r}"
        return (
            f"certified with respect to cost model {self.cost_model!r} at budget "
            f"{self.budget:.4g} (final cost {self.final_cost:.4g})"
        )


@dataclass
class Usage:
    """Token counts of one request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Return prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        """Return the counts, including the total, as a plain dict."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass
class GuardResult:
    """The answer to one guarded request."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    report: GuaranteeReport

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON values."""
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "usage": self.usage.to_dict(),
            "report": self.report.to_dict(),
        }


@dataclass
class GuardChunk:
    """One piece of a streamed answer.

    `text` is committed text only: it passed the cost check, and every later chunk extends it.
    The last chunk has `finish_reason`, `usage` and `report` set and may have empty `text`.
    """

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    report: GuaranteeReport | None = None

    @property
    def is_last(self) -> bool:
        """Return whether this chunk ends the stream."""
        return self.finish_reason is not None


class SafetyViolationError(RuntimeError):
    """Raised by the `"raise"` fallback when no certified answer exists.

    Attributes:
        report: The guarantee report of the failed request.
        partial_text: Text already streamed to the caller before the failure (checked text).
    """

    def __init__(self, message: str, report: GuaranteeReport, partial_text: str = "") -> None:
        super().__init__(message)
        self.report = report
        self.partial_text = partial_text


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool) or value is None:
        return value
    if hasattr(value, "item"):  # numpy or torch scalars
        return _jsonable(value.item())
    return str(value)
