"""Sharpness-aware minimization (Foret et al. 2021, "Sharpness-Aware Minimization for
Efficiently Improving Generalization"), as a wrapper of any torch.optim optimizer.

Each step evaluates the loss twice through the closure the loop passes (`step(closure)`):
the gradient g at the weights w, the ascent to w + e with e = rho * g / ||g|| (the
paper's eq. 2; `adaptive`: e = rho * w^2 * g / ||w * g||, ASAM, Kwon et al. 2021), the
gradient there, then the base optimizer's step from w with that gradient. The norm is over
every parameter with a gradient, as in the paper. Learning-rate schedules and weight-decay
groups act on the base optimizer's parameter groups, which are this one's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from hydra.utils import get_object
from torch import Tensor
from torch.optim import Optimizer


class SAM(Optimizer):
    requires_closure = True  # the loop steps it with a closure (optexp.parts.needs_closure)

    def __init__(
        self,
        params: Iterable[Any],
        base: str = "torch.optim.SGD",
        rho: float = 0.05,
        adaptive: bool = False,
        **base_arguments: Any,
    ) -> None:
        super().__init__(params, {"rho": rho, "adaptive": adaptive})
        self.base = get_object(base)(self.param_groups, **base_arguments)
        self.param_groups = self.base.param_groups  # one set: schedules act on both
        for group in self.param_groups:
            group.setdefault("rho", rho)
            group.setdefault("adaptive", adaptive)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        if closure is None:
            raise ValueError("SAM evaluates the loss twice per step: step(closure)")
        with torch.enable_grad():
            loss = closure()  # the gradient at w
        weights = self.ascend()
        with torch.enable_grad():
            closure()  # the gradient at w + e
        for param, w in weights:
            param.copy_(w)  # back to w, exactly
        self.base.step()
        return loss

    def ascend(self) -> list[tuple[Tensor, Tensor]]:
        """Move each parameter to w + e; return (parameter, w) to come back."""
        pairs = [
            (p, group) for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        scaled = [(p.abs() if g["adaptive"] else 1.0) * p.grad for p, g in pairs]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
        weights = [(p, p.clone()) for p, _ in pairs]
        for (p, group), s in zip(pairs, scaled, strict=True):
            p.add_(group["rho"] / (norm + 1e-12) * (p.abs() if group["adaptive"] else 1.0) * s)
        return weights

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
