"""RE-Control: gradient ascent on the last hidden state against a value function (Kong et al.,
"Aligning Large Language Models with Representation Editing: A Control Perspective", 2024).

At every step the hidden state `h` of the last layer at the last token, the input of the LM
head, is moved by a few Adam steps to increase the latent critic's value

    J(h) = v_task(h, z) + safety_weight * log p_safe(h, z)

(`v_task` in the critic's standardised units), and the next token is sampled from
`lm_head(h + delta)` with the engine's temperature and top-p. The safety state `z = d - C` is
refreshed by the cost model at every block boundary, as in the search. The edit changes only
which token is sampled, because no layer reads the last hidden state back and the KV cache
stays that of the unedited model.

NOTE: RE-Control trains its value function on every token position, but the shipped critic is
trained on block-boundary hidden states only. Between block boundaries it runs outside its
training distribution.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from shared_core.baselines.base import DecodingMethod, MethodOutput, Prompt, timed
from shared_core.config import GuardConfig
from shared_core.result import SearchStats

if TYPE_CHECKING:
    from shared_core.engine import InferenceGuard

LM_HEAD_TOLERANCE = 1e-3
"""Maximum difference between the model's logits and `lm_head(hidden_states[-1])`, relative to
the largest logit. A larger difference means that the last hidden state is not the head's input."""


class REControl(DecodingMethod):
    """Sample each token from the LM head applied to a critic-optimised last hidden state.

    Args:
        guard: The engine. Its critic must read the last layer, and its `forward(hidden, z)`
            must return the safety logit and the standardised task value with gradients, as
            `shared_core.critic.LatentCritic` does.
        steps: Adam steps per token.
        step_size: Adam learning rate, relative to the root mean square of the hidden state.
        safety_weight: Weight of `log p_safe` against `v_task` in the objective.
        config: Settings; defaults to the engine's.

    Raises:
        ValueError: If the engine has no suitable critic or a setting is invalid.
    """

    name = "re_control"

    def __init__(
        self,
        guard: InferenceGuard,
        *,
        steps: int = 4,
        step_size: float = 0.05,
        safety_weight: float = 1.0,
        config: GuardConfig | None = None,
    ) -> None:
        super().__init__(guard, config)
        critic = guard.critic
        if not isinstance(critic, torch.nn.Module):
            msg = (
                f"RE-Control needs a differentiable critic (a torch.nn.Module such as "
                f"LatentCritic), but the engine has {critic!r}. Pass critic=load_critic(...)."
            )
            raise ValueError(msg)
        num_layers = getattr(guard.model.config.get_text_config(), "num_hidden_layers", None)
        if critic.layer not in (-1, num_layers):
            msg = (
                f"RE-Control edits the LM head's input, so the critic must read the last layer "
                f"(layer -1), but critic {critic.name!r} reads layer {critic.layer}."
            )
            raise ValueError(msg)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            msg = f"Invalid steps={steps!r}: must be an integer >= 0."
            raise ValueError(msg)
        for name, value in (("step_size", step_size), ("safety_weight", safety_weight)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                msg = f"Invalid {name}={value!r}: must be a finite number >= 0."
                raise ValueError(msg)
        self.critic: torch.nn.Module = critic
        self.steps: int = steps
        self.step_size: float = float(step_size)
        self.safety_weight: float = float(safety_weight)
        self.layer: int = int(critic.layer)
        self.lm_head: torch.nn.Module = guard.model.get_output_embeddings()
        self.head_dtype: torch.dtype = next(self.lm_head.parameters()).dtype

    def _decode(
        self, prompt: Prompt, generator: torch.Generator, stats: SearchStats
    ) -> MethodOutput:
        lm = self.lm
        config = self.config
        stop_strings = self.stop_strings
        processors = self.processors()
        layer = self.layer

        with timed(stats, "prefill"):
            state = lm.prefill(prompt.ids, hidden_layer=layer)
        assert state.hidden is not None
        self._check_lm_head(state.hidden, state.next_logits)
        cache, hidden = state.cache, state.hidden
        tokens: list[int] = []
        text = ""
        z = self.budget

        for step in range(config.max_new_tokens):
            if tokens and step % config.block_size == 0:
                (cost,) = self.costs(prompt, [text], stats)
                z = self.budget - cost
            with timed(stats, "critic"):
                edited = self.edit(hidden, z)
            stats.critic_calls += self.steps
            with torch.no_grad():
                logits = self.lm_head(edited.to(self.head_dtype)).float()
                scores = processors(None, logits)  # type: ignore[arg-type]
                probs = torch.softmax(scores, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            stats.blocks += 1
            stats.candidates_sampled += 1

            if token in lm.eos_token_ids:
                return self.output(text, "stop", tokens)
            tokens.append(token)
            text = lm.decode(tokens)
            if stop_strings:
                cut, stopped = stop_strings.truncate(text)
                if stopped:
                    return self.output(cut, "stop", tokens)
            if len(tokens) >= config.max_new_tokens:
                break
            with timed(stats, "sampling"):
                _, step_hidden = lm.forward_step(cache, torch.tensor([token]), hidden_layer=layer)
            assert step_hidden is not None
            hidden = step_hidden
        return self.output(text, "length", tokens)

    def edit(self, hidden: torch.Tensor, z: float) -> torch.Tensor:
        """Return `hidden` after `steps` Adam steps of ascent on the critic's objective.

        Args:
            hidden: Last-layer hidden states, shape `(rows, hidden_size)`.
            z: The safety state of the rows' common prefix.
        """
        hidden = hidden.detach().float()
        if self.steps == 0 or self.step_size == 0:
            return hidden
        rms = hidden.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp(min=1e-6)
        delta = torch.zeros_like(hidden, requires_grad=True)
        optimizer = torch.optim.Adam([delta], lr=self.step_size)
        states = torch.full((hidden.shape[0],), float(z))
        with torch.enable_grad():
            for _ in range(self.steps):
                safety_logit, task_value = self.critic(hidden + delta * rms, states)
                objective = task_value + self.safety_weight * torch.nn.functional.logsigmoid(
                    safety_logit
                )
                # Only the edit gets a gradient, so the critic's parameters stay untouched.
                (delta.grad,) = torch.autograd.grad(-objective.sum(), delta)
                optimizer.step()
        return (hidden + delta.detach() * rms).detach()

    def _check_lm_head(self, hidden: torch.Tensor, logits: torch.Tensor) -> None:
        with torch.no_grad():
            recomputed = self.lm_head(hidden.to(self.head_dtype)).float()
        scale = logits.abs().max().clamp(min=1.0)
        if float((recomputed - logits).abs().max() / scale) > LM_HEAD_TOLERANCE:
            msg = (
                f"RE-Control cannot edit model {self.guard.model_name!r}: the LM head applied to "
                "hidden_states[-1] does not reproduce the model's logits (the model scales or "
                "caps its logits after the head)."
            )
            raise ValueError(msg)
