"""KV cache handling: cached decoding equals a full recompute, and forks leave sources intact."""

from __future__ import annotations

import torch
from tiny_models import make_model, make_tokenizer
from transformers import Qwen2Config, Qwen2ForCausalLM

from shared_core.kv_cache import batch_size, repeat_rows, select_rows
from shared_core.lm import LanguageModel
from shared_core.logits import sampling_processors
from shared_core.stopping import StopStrings


def _full_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def test_cached_block_logits_equal_full_recompute(tiny_lm):
    model, tokenizer = tiny_lm
    lm = LanguageModel(model, tokenizer)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello"}], add_generation_prompt=True, return_dict=False
    )
    state = lm.prefill(prompt)
    assert torch.allclose(state.next_logits[0], _full_logits(model, prompt), atol=1e-4)

    sample = lm.sample_block(
        state.repeat(3),
        [[], [], []],
        num_steps=6,
        max_new_tokens=100,
        processors=sampling_processors(temperature=1.0, top_p=1.0, suppress_ids=lm.eos_token_ids),
        generator=torch.Generator().manual_seed(0),
        stop_strings=StopStrings(),
    )
    assert sample.steps == 6
    for row, tokens in enumerate(sample.new_tokens):
        assert len(tokens) == 6
        expected = _full_logits(model, [*prompt, *tokens])
        assert torch.allclose(sample.state.next_logits[row], expected, atol=1e-4)


def test_hidden_state_is_last_real_token(tiny_lm):
    model, tokenizer = tiny_lm
    lm = LanguageModel(model, tokenizer)
    prompt = tokenizer.encode("hello there", add_special_tokens=False)
    state = lm.prefill(prompt, hidden_layer=-1)
    sample = lm.sample_block(
        state,
        [[]],
        num_steps=4,
        max_new_tokens=100,
        processors=sampling_processors(temperature=1.0, top_p=1.0, suppress_ids=lm.eos_token_ids),
        generator=torch.Generator().manual_seed(1),
        stop_strings=StopStrings(),
        hidden_layer=-1,
    )
    with torch.no_grad():
        full = model(
            input_ids=torch.tensor([[*prompt, *sample.new_tokens[0]]]), output_hidden_states=True
        )
    expected = full.hidden_states[-1][0, -1].float()
    assert torch.allclose(sample.state.hidden[0], expected, atol=1e-4)


def test_select_rows_leaves_source_intact(tiny_lm):
    model, tokenizer = tiny_lm
    lm = LanguageModel(model, tokenizer)
    state = lm.prefill(tokenizer.encode("hello", add_special_tokens=False))
    source_keys = [layer.keys.clone() for layer in state.cache.layers]

    forked = repeat_rows(state.cache, 4)
    assert batch_size(forked) == 4
    lm.forward_step(forked, torch.tensor([5, 6, 7, 8]))
    assert forked.get_seq_length() == state.cache.get_seq_length() + 1
    for layer, keys in zip(state.cache.layers, source_keys, strict=True):
        assert torch.equal(layer.keys, keys)

    picked = select_rows(forked, torch.tensor([3, 0]))
    assert torch.equal(picked.layers[0].keys[0], forked.layers[0].keys[3])
    assert torch.equal(picked.layers[0].keys[1], forked.layers[0].keys[0])


def test_identity_selection_is_independent(tiny_lm):
    model, tokenizer = tiny_lm
    lm = LanguageModel(model, tokenizer)
    state = lm.prefill(tokenizer.encode("hello", add_special_tokens=False))
    length = state.cache.get_seq_length()
    copy = select_rows(state.cache, torch.tensor([0]))
    lm.forward_step(copy, torch.tensor([5]))
    assert state.cache.get_seq_length() == length
    assert copy.get_seq_length() == length + 1


def test_sliding_window_model_cached_equals_recompute():
    tokenizer = make_tokenizer()
    base = make_model(tokenizer)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=1,
        layer_types=["full_attention", "sliding_attention"],
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config = base.generation_config
    lm = LanguageModel(model, tokenizer)
    prompt = tokenizer.encode("hello there, how are you today", add_special_tokens=False)
    state = lm.prefill(prompt)
    sample = lm.sample_block(
        state.repeat(2),
        [[], []],
        num_steps=10,
        max_new_tokens=100,
        processors=sampling_processors(temperature=1.0, top_p=1.0, suppress_ids=lm.eos_token_ids),
        generator=torch.Generator().manual_seed(0),
        stop_strings=StopStrings(),
    )
    for row, tokens in enumerate(sample.new_tokens):
        expected = _full_logits(model, [*prompt, *tokens])
        assert torch.allclose(sample.state.next_logits[row], expected, atol=1e-4)
