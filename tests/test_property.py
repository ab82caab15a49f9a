"""Property: every answer is certified on its exact text and streamed prefixes, or the fallback."""

from __future__ import annotations

import functools
import random

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tiny_models import make_tiny_lm

from shared_core.config import DEFAULT_REFUSAL_TEXT
from shared_core.engine import InferenceGuard
from shared_core.scoring import CallableCostModel


@functools.lru_cache(maxsize=1)
def _lm():
    model, tokenizer = make_tiny_lm()
    pieces = sorted(
        {tokenizer.decode([i]) for i in range(len(tokenizer))} - {""},
        key=lambda piece: (len(piece), piece),
    )
    return model, tokenizer, [p for p in pieces if p.strip() and "\ufffd" not in p]


def _cost_function(banned: dict[str, float]):
    def cost(prompt: str, response: str) -> float:
        return max((weight for word, weight in banned.items() if word in response), default=0.0)

    return cost


@st.composite
def _cases(draw):
    _, _, pieces = _lm()
    fraction = draw(st.floats(0.0, 0.9))
    rng = random.Random(draw(st.integers(0, 2**32)))
    words = rng.sample(pieces, max(1, int(fraction * len(pieces))))
    return {
        "banned": {word: rng.uniform(0.2, 1.0) for word in words},
        "budget": draw(st.floats(0.0, 0.8)),
        "seed": draw(st.integers(0, 2**16)),
        "fast_path": draw(st.booleans()),
        "num_beams": draw(st.sampled_from([1, 2])),
        "block_size": draw(st.sampled_from([2, 3, 5])),
        "stop": draw(st.sampled_from([(), ("e ",)])),
    }


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cases())
def test_result_is_certified_or_exact_fallback(case):
    model, tokenizer, _ = _lm()
    function = _cost_function(case["banned"])
    cost_model = CallableCostModel(function, threshold=case["budget"], name="banned-pieces")
    engine = InferenceGuard(model, tokenizer, cost_model)
    chunks = list(
        engine.stream(
            "tell me something",
            max_new_tokens=16,
            block_size=case["block_size"],
            num_samples=2 * case["num_beams"],
            num_beams=case["num_beams"],
            seed=case["seed"],
            fast_path=case["fast_path"],
            stop=case["stop"],
            temperature=1.0,
            top_p=1.0,
        )
    )
    last = chunks[-1]
    text = "".join(chunk.text for chunk in chunks)
    committed = "".join(chunk.text for chunk in chunks[:-1])
    budget = case["budget"]

    prefix = ""
    for chunk in chunks[:-1]:
        prefix += chunk.text
        assert function("", prefix) <= budget, "a streamed prefix is over the budget"

    event("certified" if last.report.certified else "fallback")
    if last.report.certified:
        assert function("", text) <= budget
        assert last.report.final_cost == function("", text)
        assert last.finish_reason in ("stop", "length")
        for stop in case["stop"]:
            assert stop not in text
    else:
        assert last.finish_reason == "content_filter"
        assert last.report.fallback == "refuse"
        assert text == committed + ("\n\n" if committed else "") + DEFAULT_REFUSAL_TEXT
