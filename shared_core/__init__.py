"""Framework-free InferenceGuard engine: safe decoding with respect to a cost model and budget.

The engine classes import torch and transformers, so they load on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from shared_core.config import GuardConfig
from shared_core.result import (
    GuaranteeReport,
    GuardChunk,
    GuardResult,
    SafetyViolationError,
    SearchStats,
    Usage,
)
from shared_core.scoring import (
    CallableCostModel,
    CallableRewardModel,
    CostModel,
    MaxCostModel,
    RewardModel,
)

if TYPE_CHECKING:
    from shared_core.critic_base import Critic
    from shared_core.engine import InferenceGuard

__all__ = [
    "CallableCostModel",
    "CallableRewardModel",
    "CostModel",
    "Critic",
    "GuaranteeReport",
    "GuardChunk",
    "GuardConfig",
    "GuardResult",
    "InferenceGuard",
    "MaxCostModel",
    "RewardModel",
    "SafetyViolationError",
    "SearchStats",
    "Usage",
]

_LAZY = {"InferenceGuard": "shared_core.engine", "Critic": "shared_core.critic_base"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module 'shared_core' has no attribute {name!r}"
    raise AttributeError(msg)
