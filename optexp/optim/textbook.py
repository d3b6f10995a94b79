"""Textbook optimizers: the update rules of TECHNIQUES.md, one line of code per formula.

Read these to see what an optimizer does, or copy one to write your own: subclass
`torch.optim.Optimizer`, put the hyperparameters in `defaults`, and update each
parameter in `step`. A YAML file whose `_target_` names the class makes it selectable
(see optexp/configs/optimizer/textbook/). Knob names follow torch.optim (`momentum`, `alpha`,
`betas`), so the same overrides work on both versions; each class's docstring maps them
to the symbols of the formulas. tests/test_optimizers.py checks every class against
its torch.optim counterpart.

Weight decay is coupled, as in torch.optim: g = grad + weight_decay * theta. State
starts at zero (`state.get(name, 0.0)`) and is replaced by the new value each step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

Closure = Callable[[], Tensor] | None


def gradients(optimizer: Optimizer) -> Iterator[tuple[dict[str, Any], Tensor, Tensor, dict]]:
    """(group, theta, g, state) for each parameter with a gradient; g includes weight decay.

    `state` is the parameter's optimizer state: what is kept there is saved in checkpoints.
    """
    for group in optimizer.param_groups:
        for theta in group["params"]:
            if theta.grad is None:
                continue
            g = theta.grad + group["weight_decay"] * theta
            yield group, theta, g, optimizer.state[theta]


def closure_loss(closure: Closure) -> Tensor | None:
    """torch.optim's step(closure) protocol: the loss, when a closure recomputes it."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class SGD(Optimizer):
    """Gradient descent: theta -= lr * g (full batch or mini-batch: the data decides)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Closure = None) -> Tensor | None:
        loss = closure_loss(closure)
        for group, theta, g, _ in gradients(self):
            theta -= group["lr"] * g
        return loss


class Momentum(Optimizer):
    """Momentum (beta = `momentum`): v = beta * v - lr * g; theta += v.

    v holds a step in parameter units, so the lr of a past step stays in it. torch's
    SGD(momentum) keeps v = beta * v + g; theta -= lr * v instead, which applies the
    current lr to the whole history: the two agree while lr is constant and differ
    when a schedule changes it.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Closure = None) -> Tensor | None:
        loss = closure_loss(closure)
        for group, theta, g, state in gradients(self):
            v = group["momentum"] * state.get("v", 0.0) - group["lr"] * g
            theta += v
            state["v"] = v
        return loss


class AdaGrad(Optimizer):
    """AdaGrad: cache += g^2; theta -= lr * g / (sqrt(cache) + eps)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, {"lr": lr, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Closure = None) -> Tensor | None:
        loss = closure_loss(closure)
        for group, theta, g, state in gradients(self):
            cache = state.get("cache", 0.0) + g**2
            theta -= group["lr"] * g / (cache.sqrt() + group["eps"])
            state["cache"] = cache
        return loss


class RMSprop(Optimizer):
    """RMSprop (rho = `alpha`): cache = rho * cache + (1 - rho) * g^2;
    theta -= lr * g / (sqrt(cache) + eps)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Closure = None) -> Tensor | None:
        loss = closure_loss(closure)
        for group, theta, g, state in gradients(self):
            rho = group["alpha"]
            cache = rho * state.get("cache", 0.0) + (1 - rho) * g**2
            theta -= group["lr"] * g / (cache.sqrt() + group["eps"])
            state["cache"] = cache
        return loss


class Adam(Optimizer):
    """Adam (b1, b2 = `betas`): m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
    m_hat = m/(1-b1^t); v_hat = v/(1-b2^t); theta -= lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Closure = None) -> Tensor | None:
        loss = closure_loss(closure)
        for group, theta, g, state in gradients(self):
            b1, b2 = group["betas"]
            t = state.get("t", 0) + 1
            m = b1 * state.get("m", 0.0) + (1 - b1) * g
            v = b2 * state.get("v", 0.0) + (1 - b2) * g**2
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            theta -= group["lr"] * m_hat / (v_hat.sqrt() + group["eps"])
            state.update(t=t, m=m, v=v)
        return loss
