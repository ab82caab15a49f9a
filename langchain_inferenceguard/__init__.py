"""LangChain integration of InferenceGuard: `ChatInferenceGuard`, a guarded chat model."""

from langchain_inferenceguard._messages import convert_messages
from langchain_inferenceguard._settings import GREEDY_TEMPERATURE
from langchain_inferenceguard._structured import ModelRefusalError
from langchain_inferenceguard.chat_models import ChatInferenceGuard

__all__ = ["GREEDY_TEMPERATURE", "ChatInferenceGuard", "ModelRefusalError", "convert_messages"]
