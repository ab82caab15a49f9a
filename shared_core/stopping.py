"""End-of-sequence tokens and stop strings.

Stop strings are matched on decoded text, so a match may span several tokens and cross block
boundaries. The match ends the sequence, and neither the stop string nor anything after it is
returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class StopStrings:
    """Finds stop strings in decoded text and the tail that could still grow into one.

    Args:
        stop: The stop strings; each must be a non-empty string.

    Example:
        >>> stops = StopStrings(["\\nUser:"])
        >>> stops.find("Sure.\\nUser: hi")
        5
        >>> stops.holdback_length("Sure.\\nUs")
        3
    """

    def __init__(self, stop: Sequence[str] = ()) -> None:
        bad = [s for s in stop if not isinstance(s, str) or not s]
        if bad:
            msg = f"Invalid stop strings {bad!r}: each stop string must be a non-empty str."
            raise ValueError(msg)
        self.stop = tuple(dict.fromkeys(stop))

    def __bool__(self) -> bool:
        return bool(self.stop)

    def find(self, text: str) -> int | None:
        """Return the start of the earliest stop string in `text`, or `None` if there is none."""
        positions = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        return min(positions) if positions else None

    def truncate(self, text: str) -> tuple[str, bool]:
        """Return `text` cut before its earliest stop string, and whether one was found."""
        index = self.find(text)
        if index is None:
            return text, False
        return text[:index], True

    def holdback_length(self, text: str) -> int:
        """Return the length of the longest tail of `text` that is a proper prefix of a stop string.

        Streaming must hold that tail back, because more text could complete the stop string and
        then the tail is not part of the answer.
        """
        longest = 0
        for stop in self.stop:
            for length in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:length]):
                    longest = length
                    break
        return longest


def eos_token_ids(model: object, tokenizer: object) -> frozenset[int]:
    """Collect the end-of-sequence token ids of a model and its tokenizer.

    The union of `model.generation_config.eos_token_id` (an int or a list), `model.config`'s
    `eos_token_id` and `tokenizer.eos_token_id`: chat models often end a turn with a token that
    only one of them names (SmolLM2 and Qwen use `<|im_end|>`).

    Raises:
        ValueError: If none of them defines an end-of-sequence token.
    """
    ids: set[int] = set()
    generation_config = getattr(model, "generation_config", None)
    config = getattr(model, "config", None)
    for source in (generation_config, config, tokenizer):
        ids.update(_as_ids(getattr(source, "eos_token_id", None)))
    if not ids:
        msg = (
            "The model defines no end-of-sequence token: set model.generation_config.eos_token_id "
            "or tokenizer.eos_token_id."
        )
        raise ValueError(msg)
    return frozenset(ids)


def _as_ids(value: int | Iterable[int] | None) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]
