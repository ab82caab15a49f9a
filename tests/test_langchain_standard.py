"""The langchain-tests standard suites for ChatInferenceGuard.

The unit suite runs on an engine over a tiny random model. The integration suite runs on the
embedded default models (SmolLM2-135M-Instruct and the default cost model) with short responses
and the `fast` preset.
"""

from __future__ import annotations

import functools

from langchain_support import random_guard
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_inferenceguard import ChatInferenceGuard
from shared_core.engine import InferenceGuard


@functools.cache
def _tiny_guard() -> InferenceGuard:
    return random_guard(seed=0)


class TestChatInferenceGuardUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatInferenceGuard]:
        return ChatInferenceGuard

    @property
    def chat_model_params(self) -> dict:
        return {"guard": _tiny_guard()}
