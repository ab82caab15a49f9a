"""One deterministic train/validation/test split by prompt, shared by every training step.

A prompt's split depends only on its normalised text, so the cost model, the judge, the critic
and the benchmark agree on it without coordination: a test prompt never enters any training step.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Literal

Split = Literal["train", "validation", "test"]

SPLIT_SALT = "inferenceguard-split-v1"
VALIDATION_SHARE = 0.15
TEST_SHARE = 0.15


def normalise_prompt(prompt: str) -> str:
    """Return `prompt` lower-cased with runs of whitespace collapsed, for matching."""
    return re.sub(r"\s+", " ", prompt).strip().lower()


def split_of(prompt: str) -> Split:
    """Return the split of `prompt`: about 70% train, 15% validation, 15% test."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{normalise_prompt(prompt)}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    if fraction < TEST_SHARE:
        return "test"
    if fraction < TEST_SHARE + VALIDATION_SHARE:
        return "validation"
    return "train"


def select(prompts: Iterable[str], split: Split) -> list[str]:
    """Return the prompts of `prompts` that fall in `split`, in order."""
    return [p for p in prompts if split_of(p) == split]
