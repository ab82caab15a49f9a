"""The embedded defaults: base model, cost model, reward proxy, judge and a ready guard.

Everything here loads from installed packages and files shipped with inferenceguard, so it runs
offline. Each loader loads weights when called, never at import.
"""

from __future__ import annotations

import logging

from shared_core.base_model import BASE_MODEL_NAME, BaseModelNotFoundError, load_base_model

logger = logging.getLogger(__name__)

__all__ = [
    "BASE_MODEL_NAME",
    "BaseModelNotFoundError",
    "load_base_model",
]
