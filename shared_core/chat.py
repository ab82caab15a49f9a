"""Chat messages: validation, the prompt text for scorers, and chat templating to token ids."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from shared_core.tools import prepare_messages

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant", "tool")

Message = dict[str, Any]
Messages = str | Sequence[Mapping[str, Any]]


def normalize_messages(messages: Messages) -> list[Message]:
    """Validate chat messages and return them as new dicts.

    A string becomes one user message. Each message needs a `role` among `ROLES` and a string
    `content`; an assistant message with `tool_calls` may have `None` or no content. Other keys
    (`name`, `tool_call_id`, ...) are passed on to the chat template.

    Raises:
        ValueError: If there are no messages, or a message has an invalid role, content or
            `tool_calls`. The message names the index of the bad message and the fix.
        TypeError: If `messages` is neither a string nor a list of dicts.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence):
        msg = (
            f"Invalid messages of type {type(messages).__name__}: pass a string or a list of "
            "dicts like {'role': 'user', 'content': '...'}."
        )
        raise TypeError(msg)
    if not messages:
        msg = "Invalid messages: the list is empty. Pass at least one message."
        raise ValueError(msg)

    normalized = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            msg = (
                f"Invalid message {index}: {message!r} is a {type(message).__name__}, not a dict "
                "like {'role': 'user', 'content': '...'}."
            )
            raise TypeError(msg)
        normalized.append(_normalize_message(index, message))
    return normalized


def _normalize_message(index: int, message: Mapping[str, Any]) -> Message:
    role = message.get("role")
    if role not in ROLES:
        msg = f"Invalid role {role!r} in message {index}: use one of {ROLES}."
        raise ValueError(msg)

    result = dict(message)
    content = message.get("content")
    tool_calls = message.get("tool_calls")
    if content is None and role == "assistant" and tool_calls:
        result["content"] = ""
    elif not isinstance(content, str):
        msg = (
            f"Invalid content in message {index} (role {role!r}): expected a str, got "
            f"{type(content).__name__}. Join multi-part content into one string first."
        )
        raise ValueError(msg)

    if tool_calls is not None:
        if role != "assistant":
            msg = (
                f"Invalid message {index}: only assistant messages may have tool_calls, "
                f"not {role!r} messages."
            )
            raise ValueError(msg)
        if not isinstance(tool_calls, Sequence) or not all(
            isinstance(call, Mapping)
            and isinstance(call.get("function", call), Mapping)
            and isinstance(call.get("function", call).get("name"), str)
            for call in tool_calls
        ):
            msg = (
                f"Invalid tool_calls in message {index}: expected a list of "
                "{'id': ..., 'type': 'function', 'function': {'name': str, 'arguments': dict}}."
            )
            raise ValueError(msg)
        result["tool_calls"] = [dict(call) for call in tool_calls]
    return result


def validate_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Return the tool schemas as new dicts, or `None` when there are none.

    Raises:
        ValueError: If a tool is not a JSON schema dict with a function name.
    """
    if not tools:
        return None
    result = []
    for index, tool in enumerate(tools):
        function = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            msg = (
                f"Invalid tool {index}: {tool!r}. Pass JSON schemas like {{'type': 'function', "
                "'function': {'name': ..., 'description': ..., 'parameters': {...}}}."
            )
            raise ValueError(msg)
        result.append(dict(tool))
    return result


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """Return the prompt `x` given to cost and reward models.

    It is the content of the last user message, or of the last message if there is no user
    message.
    """
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return str(messages[-1].get("content") or "")


def encode_messages(
    tokenizer: Any,
    messages: Sequence[Message],
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> list[int]:
    """Template and tokenize `messages` in one step, with a generation prompt for a new turn.

    Control tokens typed inside messages (e.g. `<|im_start|>system`) are encoded as plain text
    where the installed transformers offers `sanitize_control_tokens` (5.x). The template adds
    any BOS token itself, so no special tokens are added on top.

    Raises:
        ValueError: If the tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        msg = (
            f"The tokenizer {type(tokenizer).__name__} has no chat template: set "
            "tokenizer.chat_template to a Jinja template (see the transformers chat "
            "templating guide)."
        )
        raise ValueError(msg)

    prepared, template_tools = prepare_messages(messages, tools, tokenizer.chat_template)
    kwargs: dict[str, Any] = {
        "tools": template_tools,
        "add_generation_prompt": True,
        "tokenize": True,
        "return_dict": False,
    }
    if _supports_sanitizing(tokenizer):
        kwargs["sanitize_control_tokens"] = True
    else:  # pragma: no cover - transformers before sanitize_control_tokens
        logger.warning(
            "This transformers version cannot sanitize control tokens in chat messages, so a "
            "user could type a role marker that the model reads as real. Upgrade transformers."
        )
    ids = tokenizer.apply_chat_template(prepared, **kwargs)
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return [int(i) for i in ids]


def _supports_sanitizing(tokenizer: Any) -> bool:
    try:
        parameters = inspect.signature(tokenizer.apply_chat_template).parameters
    except (TypeError, ValueError):
        return False
    return "sanitize_control_tokens" in parameters


def fit_context(
    tokenizer: Any,
    messages: Sequence[Message],
    tools: Sequence[Mapping[str, Any]] | None,
    *,
    max_new_tokens: int,
    context_window: int,
    overflow: str,
) -> tuple[list[int], list[Message]]:
    """Encode `messages` so that the prompt plus `max_new_tokens` fits the context window.

    With `overflow="truncate"`, the oldest turns other than system messages are dropped one by
    one, with a warning, until the prompt fits. The last user message is never dropped.

    Returns:
        The prompt token ids and the messages they encode.

    Raises:
        ValueError: If the prompt does not fit (with `overflow="error"`, or when truncation
            cannot make it fit).
    """
    messages = list(messages)
    ids = encode_messages(tokenizer, messages, tools)
    limit = context_window - max_new_tokens
    if len(ids) <= limit:
        return ids, messages

    if overflow != "truncate":
        msg = (
            f"The prompt has {len(ids)} tokens and max_new_tokens={max_new_tokens}, which exceeds "
            f"the model's context window of {context_window} tokens. Shorten the conversation, "
            "lower max_new_tokens, or pass context_overflow='truncate' to drop the oldest turns."
        )
        raise ValueError(msg)

    original = len(ids)
    last_user = max(
        (i for i, m in enumerate(messages) if m["role"] == "user"), default=len(messages) - 1
    )
    dropped = 0
    while len(ids) > limit:
        droppable = [i for i, m in enumerate(messages) if m["role"] != "system" and i < last_user]
        if not droppable:
            msg = (
                f"The prompt still has {len(ids)} tokens after dropping {dropped} older turns; "
                f"with max_new_tokens={max_new_tokens} it exceeds the context window of "
                f"{context_window} tokens. Shorten the system or last user message, or lower "
                "max_new_tokens."
            )
            raise ValueError(msg)
        del messages[droppable[0]]
        last_user -= 1
        dropped += 1
        ids = encode_messages(tokenizer, messages, tools)

    logger.warning(
        "Dropped the %d oldest turn(s) so the prompt fits the context window: %d -> %d prompt "
        "tokens, context window %d, max_new_tokens %d.",
        dropped,
        original,
        len(ids),
        context_window,
        max_new_tokens,
    )
    return ids, messages
