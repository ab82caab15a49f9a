"""On-disk format of critic training data: safetensors shards listed in JSON-lines manifests.

A data folder contains:

- `collection.json`: the setup shared by every shard (base model and fingerprint, layer, cost
  model, budget, reward model, sampling settings). A resumed run must use the same setup.
- `shard-r{rank}-{n:05d}.safetensors`: the rows of a few prompts. Tensors: `hidden`
  (bfloat16, `(rows, hidden_size)`), `safety_state`, `safe`, `reward` (float32, `(rows,)`), and
  `prompt`, `sample`, `block` (int64, `(rows,)`; `prompt` indexes the shard's prompt list).
- `manifest-r{rank}.jsonl`: one line per finished shard, appended after the shard file is in
  place, with the shard's file name, row count and prompts (id, split, kind, source). A prompt
  listed in any manifest is finished; a crash loses at most the shard being written.

Prompts are stored by id (a hash of the normalised text), never as text, so the data folder
contains no harmful prompt text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from shared_core.data.splits import normalise_prompt

logger = logging.getLogger(__name__)

SETUP_FILE = "collection.json"
STORE_FORMAT = 1
ROW_TENSORS = ("hidden", "safety_state", "safe", "reward", "prompt", "sample", "block")

SETUP_KEYS_THAT_MUST_MATCH = (
    "format",
    "base_model_fingerprint",
    "hidden_size",
    "layer",
    "cost_model",
    "budget",
    "reward_model",
    "block_size",
    "max_new_tokens",
    "samples_per_prompt",
    "temperature",
    "top_p",
)
"""A resumed collection whose setup differs in one of these keys would mix incompatible rows."""


def prompt_id(text: str) -> str:
    """Return the id of a prompt: a hash of its normalised text."""
    return hashlib.sha256(normalise_prompt(text).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class PromptInfo:
    """A prompt as stored in a manifest: no text, only its id and where it belongs."""

    id: str
    split: str
    kind: str
    source: str


@dataclass
class CriticExamples:
    """Rows of critic training data, one per (prompt, sample, block boundary).

    `safe[i]` is 1 when the sample's safety state stayed `>= 0` from row `i`'s block boundary to
    the end of the response, and `reward[i]` is the reward of the whole response.
    """

    hidden: torch.Tensor
    """Hidden states, float32, `(rows, hidden_size)`."""

    safety_state: torch.Tensor
    """Safety states `z = budget - cost(prefix)`, float32, `(rows,)`."""

    safe: torch.Tensor
    """Final-safety labels in {0, 1}, float32, `(rows,)`."""

    reward: torch.Tensor
    """Final rewards, float32, `(rows,)`."""

    prompt: torch.Tensor
    """Index into `prompts` of each row, int64, `(rows,)`."""

    sample: torch.Tensor
    block: torch.Tensor
    prompts: list[PromptInfo]

    def __len__(self) -> int:
        return int(self.safe.shape[0])

    @property
    def row_splits(self) -> list[str]:
        """The split of each row's prompt."""
        return [self.prompts[i].split for i in self.prompt.tolist()]

    def select(self, mask: torch.Tensor) -> CriticExamples:
        """Return the rows where `mask` is true, keeping the full prompt list."""
        return CriticExamples(
            hidden=self.hidden[mask],
            safety_state=self.safety_state[mask],
            safe=self.safe[mask],
            reward=self.reward[mask],
            prompt=self.prompt[mask],
            sample=self.sample[mask],
            block=self.block[mask],
            prompts=self.prompts,
        )

    def in_splits(self, splits: Iterable[str]) -> CriticExamples:
        """Return the rows whose prompt is in one of `splits`."""
        requested = set(splits)
        keep = torch.tensor([p.split in requested for p in self.prompts], dtype=torch.bool)
        if len(self) == 0:
            return self
        return self.select(keep[self.prompt])

    def in_prompts(self, prompt_indices: Iterable[int]) -> CriticExamples:
        """Return the rows of the prompts with the given indices."""
        keep = torch.zeros(len(self.prompts), dtype=torch.bool)
        keep[list(prompt_indices)] = True
        return self.select(keep[self.prompt])

    def summary(self) -> dict[str, Any]:
        """Return row, prompt and label counts for logs and the critic card."""
        used = sorted(set(self.prompt.tolist()))
        kinds: dict[str, int] = {}
        sources: dict[str, int] = {}
        for index in used:
            info = self.prompts[index]
            kinds[info.kind] = kinds.get(info.kind, 0) + 1
            sources[info.source] = sources.get(info.source, 0) + 1
        return {
            "rows": len(self),
            "prompts": len(used),
            "prompts_by_kind": dict(sorted(kinds.items())),
            "prompts_by_source": dict(sorted(sources.items())),
            "safe_rate": float(self.safe.mean()) if len(self) else None,
        }


class ShardWriter:
    """Writes the shards and the manifest of one process into a data folder."""

    def __init__(self, folder: Path, rank: int = 0) -> None:
        self.folder = folder
        self.rank = rank
        self.manifest = folder / f"manifest-r{rank}.jsonl"
        existing = sorted(folder.glob(f"shard-r{rank}-*.safetensors"))
        self.next_index = 1 + max((int(p.stem.rsplit("-", 1)[1]) for p in existing), default=-1)

    def write(self, prompts: Sequence[PromptInfo], rows: dict[str, torch.Tensor]) -> Path:
        """Write one shard for `prompts` and record it in the manifest; return its path.

        Args:
            prompts: The prompts of the shard; `rows["prompt"]` indexes this list.
            rows: The tensors named in `ROW_TENSORS`, all with the same number of rows.
        """
        missing = sorted(set(ROW_TENSORS) - set(rows))
        if missing:
            msg = f"Shard rows are missing tensors {missing}."
            raise ValueError(msg)
        counts = {name: int(rows[name].shape[0]) for name in ROW_TENSORS}
        if len(set(counts.values())) != 1:
            msg = f"Shard tensors have different row counts: {counts}."
            raise ValueError(msg)

        name = f"shard-r{self.rank}-{self.next_index:05d}.safetensors"
        self.next_index += 1
        tensors = {
            "hidden": rows["hidden"].to(torch.bfloat16),
            **{k: rows[k].to(torch.float32) for k in ("safety_state", "safe", "reward")},
            **{k: rows[k].to(torch.int64) for k in ("prompt", "sample", "block")},
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        temporary = self.folder / f".{name}.tmp"
        save_file(tensors, str(temporary))
        os.replace(temporary, self.folder / name)

        entry = {
            "file": name,
            "rows": counts["hidden"],
            "prompts": [vars(p) for p in prompts],
        }
        with self.manifest.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return self.folder / name


def write_setup(folder: Path, setup: dict[str, Any]) -> None:
    """Write `collection.json`, or check that an existing one has the same setup.

    Raises:
        ValueError: If the folder already contains data collected with another setup.
    """
    folder.mkdir(parents=True, exist_ok=True)
    setup = {"format": STORE_FORMAT, **setup}
    path = folder / SETUP_FILE
    if path.is_file():
        existing = json.loads(path.read_text(encoding="utf-8"))
        different = {
            key: (existing.get(key), setup.get(key))
            for key in SETUP_KEYS_THAT_MUST_MATCH
            if existing.get(key) != setup.get(key)
        }
        if different:
            msg = (
                f"{folder} contains critic data collected with another setup "
                f"(key: (stored, requested)) {different}. Use a new --output folder, or repeat "
                "the original settings to resume."
            )
            raise ValueError(msg)
        return
    temporary = folder / f".{SETUP_FILE}.{os.getpid()}.tmp"  # processes may race here
    temporary.write_text(json.dumps(setup, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_setup(folder: Path) -> dict[str, Any]:
    """Return the collection setup of a data folder.

    Raises:
        FileNotFoundError: If `folder` is not a critic data folder.
    """
    path = Path(folder) / SETUP_FILE
    if not path.is_file():
        msg = (
            f"{path} not found: {folder} is not a critic data folder. Collect data with "
            "`inferenceguard collect-critic-data --output FOLDER`."
        )
        raise FileNotFoundError(msg)
    return dict(json.loads(path.read_text(encoding="utf-8")))


def read_manifests(folder: Path) -> list[dict[str, Any]]:
    """Return the manifest entries of every process whose shard file exists, in file order.

    A truncated last line (a crash while appending) is skipped with a warning.
    """
    entries = []
    for manifest in sorted(Path(folder).glob("manifest-r*.jsonl")):
        for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("Skipping unreadable line %d of %s", number, manifest)
                continue
            if (Path(folder) / entry["file"]).is_file():
                entries.append(entry)
            else:
                logger.warning("Skipping %s listed in %s: file not found", entry["file"], manifest)
    return entries


def finished_prompt_ids(folder: Path) -> set[str]:
    """Return the ids of the prompts whose rows are already on disk."""
    if not Path(folder).is_dir():
        return set()
    return {p["id"] for entry in read_manifests(folder) for p in entry["prompts"]}


def load_examples(folder: str | Path) -> CriticExamples:
    """Read every shard of a data folder into one `CriticExamples` (hidden states as float32).

    Raises:
        FileNotFoundError: If `folder` is not a critic data folder.
        ValueError: If it contains no shard.
    """
    folder = Path(folder)
    setup = read_setup(folder)
    entries = read_manifests(folder)
    if not entries:
        msg = f"{folder} contains no finished shard. Run `inferenceguard collect-critic-data`."
        raise ValueError(msg)

    prompts: list[PromptInfo] = []
    index_of: dict[str, int] = {}
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in ROW_TENSORS}
    for entry in entries:
        tensors = load_file(str(folder / entry["file"]))
        local_to_global = []
        for info in entry["prompts"]:
            if info["id"] not in index_of:
                index_of[info["id"]] = len(prompts)
                prompts.append(PromptInfo(**info))
            local_to_global.append(index_of[info["id"]])
        mapping = torch.tensor(local_to_global, dtype=torch.int64)
        for name in ROW_TENSORS:
            tensor = tensors[name]
            if name == "prompt":
                tensor = mapping[tensor] if tensor.numel() else tensor
            parts[name].append(tensor)

    joined = {name: torch.cat(parts[name]) for name in ROW_TENSORS}
    if joined["hidden"].shape[1] != setup["hidden_size"]:
        msg = (
            f"Shards in {folder} have hidden size {joined['hidden'].shape[1]}, but "
            f"{SETUP_FILE} says {setup['hidden_size']}."
        )
        raise ValueError(msg)
    return CriticExamples(
        hidden=joined["hidden"].float(),
        safety_state=joined["safety_state"].float(),
        safe=joined["safe"].float(),
        reward=joined["reward"].float(),
        prompt=joined["prompt"],
        sample=joined["sample"],
        block=joined["block"],
        prompts=prompts,
    )
