"""LlamaIndex adapter for InferenceGuard safe decoding.

`InferenceGuardLLM` is a LlamaIndex `FunctionCallingLLM`: set it as `Settings.llm` or pass it
as `llm=` to query engines, chat engines and agents. `MiniLMEmbedding` is a local embedding
model on the embedded all-MiniLM-L6-v2, and `to_engine_messages` converts LlamaIndex chat
messages to the engine's message dicts.
"""

from llamaindex_inferenceguard._messages import to_engine_messages
from llamaindex_inferenceguard.base import InferenceGuardLLM
from llamaindex_inferenceguard.embeddings import MiniLMEmbedding

__all__ = ["InferenceGuardLLM", "MiniLMEmbedding", "to_engine_messages"]
