"""Tiny random-weight chat models built in-process, so unit tests need no download."""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, as SmolLM2 uses it, with tools rendered into the system turn.
CHAT_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nYou can call these tools:\n"
    "{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n"
    "Answer with <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>.<|im_end|>\n"
    "{%- endif %}"
    "{%- for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message.get('content') %}{{ message['content'] }}{%- endif %}"
    "{%- for call in message.get('tool_calls', []) or [] %}"
    "<tool_call>{{ call | tojson }}</tool_call>{%- endfor %}"
    "<|im_end|>\n"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)

_CORPUS = [
    "Hello, how can I help you today? I am a helpful assistant.",
    "The quick brown fox jumps over the lazy dog. Safety first, always.",
    "Here is a recipe: mix flour, water and salt, then bake for twenty minutes.",
    "I cannot help with that. Please ask something else.",
    "system user assistant tool call arguments name weather city Paris",
    "bomb weapon attack harm kill poison steal hack danger",
    "0 1 2 3 4 5 6 7 8 9 { } [ ] : , . ! ? \" ' ( ) < > / \\ _ - + = * & ^ % $ # @",
]


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return str(tokenizer.to_str())


def make_tokenizer() -> PreTrainedTokenizerFast:
    """Build a byte-level BPE chat tokenizer with ChatML control tokens."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_model(
    tokenizer: PreTrainedTokenizerFast | None = None,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    max_position_embeddings: int = 512,
) -> LlamaForCausalLM:
    """Build a tiny random-weight Llama model for `tokenizer`, in eval mode."""
    tokenizer = tokenizer or make_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.name_or_path = f"tiny-random-llama-{seed}"
    return model.eval()


def make_tiny_lm(seed: int = 0) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Return a tiny random chat model and its tokenizer."""
    tokenizer = make_tokenizer()
    return make_model(tokenizer, seed=seed), tokenizer
