"""The langchain-tests standard suites for ChatInferenceGuard.

The unit suite runs on an engine over a tiny random model. The integration suite runs on the
embedded default models (SmolLM2-135M-Instruct and the default cost model) with short responses
and the `fast` preset.
"""

from __future__ import annotations

import functools

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_support import random_guard
from langchain_tests.integration_tests import ChatModelIntegrationTests
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


_TOOL_CALL_XFAIL = pytest.mark.xfail(
    reason=(
        "SmolLM2-135M-Instruct, the embedded default model, rarely writes a valid <tool_call> "
        "block within a short answer; test_langchain_tools.py checks tool calling on models "
        "with forced output."
    ),
    strict=False,
)
_STRUCTURED_XFAIL = pytest.mark.xfail(
    reason=(
        "SmolLM2-135M-Instruct, the embedded default model, rarely writes JSON or a tool call "
        "that matches the schema within a short answer; test_langchain_tools.py checks "
        "structured output on models with forced output."
    ),
    strict=False,
)
_OUTPUT_VERSIONS = pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
_SCHEMA_TYPES = pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])


@pytest.mark.integration
class TestChatInferenceGuardIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatInferenceGuard]:
        return ChatInferenceGuard

    @property
    def chat_model_params(self) -> dict:
        # The default engine loads once and is shared by every instance.
        return {"max_tokens": 16, "preset": "fast", "seed": 0}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @_TOOL_CALL_XFAIL
    @_OUTPUT_VERSIONS
    def test_tool_calling(self, model: BaseChatModel) -> None:
        super().test_tool_calling(model)

    @_TOOL_CALL_XFAIL
    async def test_tool_calling_async(self, model: BaseChatModel) -> None:
        await super().test_tool_calling_async(model)

    @_TOOL_CALL_XFAIL
    def test_bind_runnables_as_tools(self, model: BaseChatModel) -> None:
        super().test_bind_runnables_as_tools(model)

    @_TOOL_CALL_XFAIL
    def test_tool_choice(self, model: BaseChatModel) -> None:
        super().test_tool_choice(model)

    @_TOOL_CALL_XFAIL
    def test_tool_calling_with_no_arguments(self, model: BaseChatModel) -> None:
        super().test_tool_calling_with_no_arguments(model)

    @_TOOL_CALL_XFAIL
    @_OUTPUT_VERSIONS
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)

    @_TOOL_CALL_XFAIL
    def test_unicode_tool_call_integration(
        self,
        model: BaseChatModel,
        *,
        tool_choice: str | None = None,
        force_tool_call: bool = True,
    ) -> None:
        super().test_unicode_tool_call_integration(
            model, tool_choice=tool_choice, force_tool_call=force_tool_call
        )

    @_STRUCTURED_XFAIL
    @_SCHEMA_TYPES
    def test_structured_output(self, model: BaseChatModel, schema_type: str) -> None:
        super().test_structured_output(model, schema_type)  # type: ignore[arg-type]

    @_STRUCTURED_XFAIL
    @_SCHEMA_TYPES
    async def test_structured_output_async(self, model: BaseChatModel, schema_type: str) -> None:
        await super().test_structured_output_async(model, schema_type)  # type: ignore[arg-type]

    @_STRUCTURED_XFAIL
    def test_structured_output_pydantic_2_v1(self, model: BaseChatModel) -> None:
        super().test_structured_output_pydantic_2_v1(model)

    @_STRUCTURED_XFAIL
    def test_structured_output_optional_param(self, model: BaseChatModel) -> None:
        super().test_structured_output_optional_param(model)

    @_STRUCTURED_XFAIL
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)
