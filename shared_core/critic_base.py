"""The interface between the search and a latent critic."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Critic(Protocol):
    """Estimates, from a hidden state and a safety state, the chance of staying safe and the reward.

    The search calls it at every block boundary with the base model's hidden state of layer
    `layer` at the last token of each candidate, and the candidate's safety state `z`.
    """

    @property
    def name(self) -> str:
        """A stable name, reported with every answer."""
        ...

    @property
    def layer(self) -> int:
        """Index into the model's `hidden_states` tuple (`-1` is the last layer)."""
        ...

    @property
    def scale(self) -> float:
        """The critic sees `z / scale`."""
        ...

    def predict(
        self, hidden: torch.Tensor, safety_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return `(p_safe, v_task)`, each of shape `(batch,)`.

        Args:
            hidden: Hidden states, shape `(batch, hidden_size)`.
            safety_state: Unnormalised safety states `z`, shape `(batch,)`.
        """
        ...

    def check_compatible(self, model: torch.nn.Module) -> None:
        """Raise `ValueError` if the critic was not trained for `model`."""
        ...
