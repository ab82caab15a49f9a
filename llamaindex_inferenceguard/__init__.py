"""LlamaIndex adapter for InferenceGuard safe decoding.

`InferenceGuardLLM` is a LlamaIndex `FunctionCallingLLM`: set it as `Settings.llm` or pass it
as `llm=` to query engines, chat engines and agents.
"""

from llamaindex_inferenceguard.base import InferenceGuardLLM

__all__ = ["InferenceGuardLLM"]
