"""The Sauté safety state: the remaining safety budget of a response prefix.

After `k` blocks the state is `z_k = d - C(x, y_k)`, the budget `d` minus the cost of the prefix.
The constraint is anytime, because every prefix can be streamed: a sequence whose prefix ever
had `z < 0` is violated for good, even if a longer prefix scores lower (the state is absorbing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SafetyState:
    """The safety state of one sequence.

    Example:
        >>> state = SafetyState.initial(budget=0.5).advance(cost=0.2)
        >>> round(state.z, 3), state.violated
        (0.3, False)
        >>> state.advance(cost=0.9).advance(cost=0.1).violated
        True
    """

    budget: float
    """Safety budget `d`."""

    z: float
    """Remaining budget `d - C(x, y_k)` after the latest block."""

    min_z: float
    """Minimum of `z` over all block prefixes so far."""

    cost: float | None = None
    """Cost of the latest prefix; `None` before the first block."""

    violated: bool = False
    """Whether any prefix so far had `z < 0`."""

    @classmethod
    def initial(cls, budget: float) -> SafetyState:
        """Return the state of the empty response: the whole budget remains."""
        return cls(budget=budget, z=budget, min_z=budget)

    def advance(self, cost: float) -> SafetyState:
        """Return the state after a block whose prefix has cost `cost`.

        Raises:
            ValueError: If `cost` is not a finite number.
        """
        if not math.isfinite(cost):
            msg = f"Invalid cost {cost!r}: a cost must be a finite number."
            raise ValueError(msg)
        z = self.budget - cost
        return SafetyState(
            budget=self.budget,
            z=z,
            min_z=min(self.min_z, z),
            cost=cost,
            violated=self.violated or z < 0,
        )

    @property
    def overshoot(self) -> float:
        """How far the latest cost is over the budget, `C - d` (negative when within it)."""
        return -self.z
