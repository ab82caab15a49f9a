"""The commit rule of streaming: which text can be shown before the search has finished.

Committed text is a checked block-boundary text that every answer-eligible sequence shares, so
whatever the search returns later starts with it (unless the fallback fires, see
`InferenceGuard.stream`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shared_core.stopping import StopStrings

REPLACEMENT_CHARACTER = "\ufffd"


class CommitTracker:
    """Tracks the committed prefix of one request.

    Every answer-eligible sequence (a live beam that was never violated, or a finished
    candidate that was never violated) carries the texts of its block-boundary prefixes, each
    scored by the cost model within the budget. The committed text is the longest such text
    that every eligible sequence has, that extends the text committed before, and that is
    stable: it ends neither in an incomplete UTF-8 character (decoded as U+FFFD) nor in a
    tail that could grow into a stop string.

    Args:
        stop_strings: The request's stop strings.

    Example:
        >>> tracker = CommitTracker(StopStrings(["\\n\\n"]))
        >>> tracker.update([("Hi", "Hi there"), ("Hi", "Hi you")])
        'Hi'
        >>> tracker.update([("Hi", "Hi there", "Hi there, friend")])
        ' there, friend'
    """

    def __init__(self, stop_strings: StopStrings) -> None:
        self.stop_strings = stop_strings
        self.committed = ""

    def is_stable(self, text: str) -> bool:
        """Return whether later tokens cannot change `text` or cut it at a stop string."""
        if text.endswith(REPLACEMENT_CHARACTER):
            return False
        return not (self.stop_strings and self.stop_strings.holdback_length(text))

    def update(self, histories: Iterable[Sequence[str]]) -> str:
        """Advance the committed text and return what was added (possibly empty).

        Args:
            histories: For each eligible sequence, its checked block-boundary texts. With no
                eligible sequence nothing is committed.
        """
        histories = list(histories)
        if not histories:
            return ""
        shared = set(histories[0])
        for history in histories[1:]:
            shared.intersection_update(history)
        options = [
            text
            for text in shared
            if len(text) > len(self.committed)
            and text.startswith(self.committed)
            and self.is_stable(text)
        ]
        if not options:
            return ""
        best = max(options, key=len)
        delta = best[len(self.committed) :]
        self.committed = best
        return delta
