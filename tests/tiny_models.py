"""Tiny random-weight chat models built in-process, so unit tests need no download."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, as SmolLM2 uses it, with tools rendered into the system turn.
CHAT_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nYou can call these tools:\n"
    "{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n"
    'Answer with <tool_call>{"name": ..., "arguments": ...}</tool_call>.<|im_end|>\n'
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


class ForcedLlamaForCausalLM(LlamaForCausalLM):
    """A tiny Llama whose sampled output is forced to a fixed script of token ids.

    The forward pass is the real one (so hidden states and the KV cache are real); only the
    logits are replaced. A forward over more than one token is taken as the prompt's prefill and
    sets where the script starts; each later position `p` gets logits that put almost all mass on
    `script[p - prompt_length]`, then on EOS once the script is exhausted.
    """

    script: list[int]
    prompt_length: int

    def forward(self, input_ids=None, cache_position=None, **kwargs):  # type: ignore[no-untyped-def]
        outputs = super().forward(input_ids=input_ids, cache_position=cache_position, **kwargs)
        length = input_ids.shape[1]
        past = kwargs.get("cache", kwargs.get("past_key_values"))
        past_length = past.get_seq_length() - length if past is not None else 0
        if length > 1:
            self.prompt_length = past_length + length
        start = past_length + length - self.prompt_length  # script index of the next token
        logits = torch.full_like(outputs.logits, -30.0)
        kept = logits.shape[1]  # generate() may keep only the last position's logits
        for offset in range(kept):
            index = start - (kept - 1) + offset
            if index < 0:
                continue
            token = self.script[index] if index < len(self.script) else self.config.eos_token_id
            logits[:, offset, token] = 30.0
        outputs.logits = logits
        return outputs


def make_forced_model(
    text: str, tokenizer: PreTrainedTokenizerFast | None = None
) -> tuple[ForcedLlamaForCausalLM, PreTrainedTokenizerFast]:
    """Return a tiny model that always answers `text` (then EOS), and its tokenizer."""
    tokenizer = tokenizer or make_tokenizer()
    base = make_model(tokenizer)
    model = ForcedLlamaForCausalLM(base.config)
    model.load_state_dict(base.state_dict())
    model.generation_config = base.generation_config
    model.script = tokenizer.encode(text, add_special_tokens=False)
    model.prompt_length = 0
    model.name_or_path = "tiny-forced-llama"
    return model.eval(), tokenizer


class ScriptedLlamaForCausalLM(ForcedLlamaForCausalLM):
    """A forced tiny Llama that picks its script from the prompt text at every prefill.

    `select_text(prompt)` gets the decoded prompt, special tokens included, and returns the
    text to force, so one model can output a tool call first and a plain reply once the
    prompt contains the tool's response.
    """

    select_text: Callable[[str], str]
    script_tokenizer: PreTrainedTokenizerFast

    def forward(self, input_ids=None, cache_position=None, **kwargs):  # type: ignore[no-untyped-def]
        if input_ids is not None and input_ids.shape[1] > 1:
            prompt = self.script_tokenizer.decode(input_ids[0].tolist())
            text = self.select_text(prompt)
            self.script = self.script_tokenizer.encode(text, add_special_tokens=False)
        return super().forward(input_ids=input_ids, cache_position=cache_position, **kwargs)


def make_scripted_model(
    select_text: Callable[[str], str],
    tokenizer: PreTrainedTokenizerFast | None = None,
    *,
    max_position_embeddings: int = 512,
) -> tuple[ScriptedLlamaForCausalLM, PreTrainedTokenizerFast]:
    """Return a tiny model that outputs `select_text(prompt)` (then EOS), and its tokenizer."""
    tokenizer = tokenizer or make_tokenizer()
    base = make_model(tokenizer, max_position_embeddings=max_position_embeddings)
    model = ScriptedLlamaForCausalLM(base.config)
    model.load_state_dict(base.state_dict())
    model.generation_config = base.generation_config
    model.select_text = select_text
    model.script_tokenizer = tokenizer
    model.script = []
    model.prompt_length = 0
    model.name_or_path = "tiny-scripted-llama"
    return model.eval(), tokenizer
