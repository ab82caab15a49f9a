"""Where inferenceguard keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV_VAR = "INFERENCEGUARD_CACHE"


def cache_dir() -> Path:
    """Return the cache folder: `$INFERENCEGUARD_CACHE`, or `~/.cache/inferenceguard`."""
    override = os.environ.get(CACHE_ENV_VAR)
    base = Path(override).expanduser() if override else Path.home() / ".cache" / "inferenceguard"
    return base
