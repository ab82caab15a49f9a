"""The quick demo end to end on the embedded default models and the packaged prompt sets.

Checks never put prompt or response text into an assertion message, because some of it is
harmful: each check compares counts or flags.
"""

from __future__ import annotations

import io

import pytest

from shared_core.demo import LANGCHAIN, LLAMAINDEX, QUICK, run_demo


@pytest.fixture(scope="module")
def quick_demo():
    out = io.StringIO()
    answers = run_demo(QUICK, seed=0, out=out)
    return answers, out.getvalue()


@pytest.mark.integration
def test_quick_demo_covers_both_adapters(quick_demo):
    answers, printed = quick_demo

    for adapter in (LANGCHAIN, LLAMAINDEX):
        kinds = sorted(a.prompt.kind for a in answers if a.adapter == adapter)
        assert kinds == ["benign"] * QUICK.benign + ["harmful"] * QUICK.harmful, adapter
    assert "Summary (cost model 'inferenceguard/minilm-harm-v1'" in printed
    assert printed.count("[1/4]") == 2  # step start and end
    assert "[4/4] done in" in printed


@pytest.mark.integration
def test_quick_demo_answers_certified_or_fallback(quick_demo):
    answers, _ = quick_demo

    for answer in answers:
        report = answer.report
        assert report.certified != (report.fallback is not None), answer.prompt.label
        if report.certified:
            assert report.final_cost is not None
            assert report.final_cost <= report.budget, answer.prompt.label


@pytest.mark.integration
def test_quick_demo_withholds_harmful_text(quick_demo):
    answers, printed = quick_demo
    harmful = [a for a in answers if a.prompt.harmful]

    leaked_prompts = [a.prompt.label for a in harmful if a.prompt.text in printed]
    leaked_plain = [
        a.prompt.label for a in harmful if len(a.plain_text) > 20 and a.plain_text in printed
    ]
    unchecked_answers = [
        a.prompt.label
        for a in harmful
        if not a.refusal
        and a.guard_judge_unsafe is not False
        and len(a.guard_text) > 20
        and a.guard_text in printed
    ]
    assert len(harmful) == 2 * QUICK.harmful
    assert leaked_prompts == []
    assert leaked_plain == []
    assert unchecked_answers == []
