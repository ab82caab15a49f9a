"""The streaming commit rule."""

from __future__ import annotations

from shared_core.stopping import StopStrings
from shared_core.streaming import CommitTracker


def test_commit_shared_boundary_text():
    tracker = CommitTracker(StopStrings())
    assert tracker.update([("Hi", "Hi there"), ("Hi", "Hi you")]) == "Hi"
    assert tracker.committed == "Hi"


def test_commit_nothing_without_shared_text():
    tracker = CommitTracker(StopStrings())
    assert tracker.update([("Hello",), ("Help",)]) == ""
    assert tracker.committed == ""


def test_commit_nothing_without_eligible_sequences():
    tracker = CommitTracker(StopStrings())
    assert tracker.update([]) == ""


def test_commit_only_whole_boundary_texts():
    # "Hel" is a shared string prefix but no block boundary, so it was never checked.
    tracker = CommitTracker(StopStrings())
    assert tracker.update([("Hello",), ("Help",), ("Hello", "Help")]) == ""


def test_commit_grows_monotonically():
    tracker = CommitTracker(StopStrings())
    assert tracker.update([("a", "ab")]) == "ab"
    assert tracker.update([("a", "ab", "abc")]) == "c"
    assert tracker.update([("a",)]) == ""  # a shorter shared text never shrinks the commit
    assert tracker.committed == "abc"


def test_commit_holds_back_incomplete_utf8():
    tracker = CommitTracker(StopStrings())
    assert tracker.update([("ok", "ok \ufffd")]) == "ok"


def test_commit_holds_back_possible_stop_start():
    tracker = CommitTracker(StopStrings(["\nUser:"]))
    assert tracker.update([("Sure", "Sure.\nUs")]) == "Sure"
    assert tracker.update([("Sure", "Sure.\nUs", "Sure.\nUsually")]) == ".\nUsually"
