"""Stacked steps whose hyperparameters differ per member: the trials of a study trained
as one stack.

torch's optimizers take a tensor lr or betas only with one element, so a group whose
members differ in them steps with one of the classes below, each the update of the
optimizer it stands for (`STACKED`; tests/test_stacked_optimizers.py checks each against
it, member by member) on parameters stacked along a first dimension of K members. A
hyperparameter in a parameter group is a number (the same for every member) or a (K,)
tensor (one per member); the group sets them before each step from the members' own
optimizers, which their own schedules drive (`optexp.vector.steps`).

An optimizer of your own stacks trials when its class says `stacks_members = True` and its
`step` takes (K,) tensors in its parameter groups as these do."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class NotVectorizable(Exception):
    """The group trains as separate runs instead; the message says why."""


Value = float | Tensor  # a number for every member, or a (K,) tensor, one per member


class StackedOptimizer(torch.optim.Optimizer):
    """Steps every parameter with `update`, its hyperparameters shaped to broadcast over
    the stacked parameter: numbers as they are, (K,) tensors as (K, 1, ..., 1) in its dtype.
    `per_member_state`: state entries kept per member beside the per-element ones."""

    stacks_members = True
    per_member_state: tuple[str, ...] = ()
    UNSUPPORTED = ("amsgrad", "maximize", "capturable", "differentiable")

    def __init__(self, params: Any, defaults: dict[str, Any], given: dict[str, Any]) -> None:
        for flag in self.UNSUPPORTED:
            if given.get(flag):
                raise NotVectorizable(f"{flag}=true has no stacked step with a value per member")
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    shaped = {k: shaped_like(v, p) for k, v in group.items() if k != "params"}
                    self.update(p, p.grad, self.state[p], shaped)

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Any], h: dict[str, Any]) -> None:
        raise NotImplementedError


def shaped_like(value: Any, p: Tensor) -> Any:
    """A (K,) tensor as (K, 1, ..., 1) on `p`'s device in float64 (the coefficients made
    from it are cast to `p`'s dtype where they meet it, as torch's Python floats are);
    a tuple element by element; anything else as it is."""
    if isinstance(value, tuple | list):
        return tuple(shaped_like(v, p) for v in value)
    if isinstance(value, Tensor):
        return value.to(p.device, torch.float64).view(-1, *[1] * (p.ndim - 1))
    return value


def cast(value: Value, p: Tensor) -> Value:
    return value.to(p.dtype) if isinstance(value, Tensor) else value


# x + a * y and x + a * t1 op t2 as torch's `alpha=` and `value=` round them (one fused
# multiply-add), with `a` a number or (K, 1, ...) tensor: a stack's members then step bit
# for bit as torch's single-tensor step, which matters where a trial is chaotic.
def add_scaled(x: Tensor, y: Tensor, a: Value, inplace: bool = False) -> Tensor:
    if isinstance(a, Tensor):
        return x.addcmul_(y, a) if inplace else torch.addcmul(x, y, a)
    return x.add_(y, alpha=a) if inplace else x.add(y, alpha=a)


def addcmul_(x: Tensor, t1: Tensor, t2: Tensor, a: Value) -> Tensor:
    return x.addcmul_(t1 * a, t2) if isinstance(a, Tensor) else x.addcmul_(t1, t2, value=a)


def addcdiv_(x: Tensor, t1: Tensor, t2: Tensor, a: Value) -> Tensor:
    return x.addcdiv_(t1 * a, t2) if isinstance(a, Tensor) else x.addcdiv_(t1, t2, value=a)


def nonzero(value: Value) -> bool:
    return bool((value != 0).any()) if isinstance(value, Tensor) else value != 0


class SGD(StackedOptimizer):
    """torch.optim.SGD: coupled weight decay, heavy-ball or Nesterov momentum, dampening."""

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 **given: Any) -> None:  # fmt: skip
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)  # fmt: skip
        super().__init__(params, defaults, given)

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Any], h: dict[str, Any]) -> None:
        if nonzero(h["weight_decay"]):
            grad = add_scaled(grad, p, cast(h["weight_decay"], p))
        if nonzero(h["momentum"]):
            momentum = cast(h["momentum"], p)
            if (buffer := state.get("momentum_buffer")) is None:
                buffer = state["momentum_buffer"] = grad.clone()
            else:
                add_scaled(buffer.mul_(momentum), grad, cast(1 - h["dampening"], p), inplace=True)
            grad = add_scaled(grad, buffer, momentum) if h["nesterov"] else buffer
        add_scaled(p, grad, cast(-h["lr"], p), inplace=True)


class Adam(StackedOptimizer):
    """torch.optim.Adam (and AdamW: `decoupled_weight_decay`), without amsgrad."""

    decoupled = False

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool | None = None, **given: Any) -> None:  # fmt: skip
        decoupled = self.decoupled if decoupled_weight_decay is None else decoupled_weight_decay
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled)  # fmt: skip
        super().__init__(params, defaults, given)

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Any], h: dict[str, Any]) -> None:
        lr, (beta1, beta2), eps, decay = h["lr"], h["betas"], h["eps"], h["weight_decay"]
        step = advance(state, p, "exp_avg", "exp_avg_sq")
        grad = with_decay(p, grad, lr, decay, h["decoupled_weight_decay"])
        state["exp_avg"].lerp_(grad, cast(1 - beta1, p))
        addcmul_(state["exp_avg_sq"].mul_(cast(beta2, p)), grad, grad, cast(1 - beta2, p))
        step_size = lr / (1 - beta1**step)
        correction2 = (1 - beta2**step) ** 0.5
        denom = (state["exp_avg_sq"].sqrt() / cast(correction2, p)).add_(cast(eps, p))
        addcdiv_(p, state["exp_avg"], denom, cast(-step_size, p))


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay."""

    decoupled = True


class NAdam(StackedOptimizer):
    """torch.optim.NAdam (NAdamW with `decoupled_weight_decay`): Dozat's Nesterov step with
    torch's momentum schedule `momentum_decay`; the product of the momentum coefficients
    is kept per member."""

    per_member_state = ("mu_product",)

    def __init__(self, params: Any, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, **given: Any) -> None:  # fmt: skip
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay)  # fmt: skip
        super().__init__(params, defaults, given)

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Any], h: dict[str, Any]) -> None:
        lr, (beta1, beta2), eps, psi = h["lr"], h["betas"], h["eps"], h["momentum_decay"]
        step = advance(state, p, "exp_avg", "exp_avg_sq")
        if "mu_product" not in state:
            state["mu_product"] = torch.ones(p.shape[0], device=p.device)
        grad = with_decay(p, grad, lr, h["weight_decay"], h["decoupled_weight_decay"])
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * psi))
        product = state["mu_product"].view(-1, *[1] * (p.ndim - 1))
        product.mul_(cast(mu, product))
        product_next = product.double() * mu_next
        state["exp_avg"].lerp_(grad, cast(1 - beta1, p))
        addcmul_(state["exp_avg_sq"].mul_(cast(beta2, p)), grad, grad, cast(1 - beta2, p))
        denom = (state["exp_avg_sq"] / cast(1 - beta2**step, p)).sqrt().add_(cast(eps, p))
        now = -lr * (1.0 - mu) / (1.0 - product.double())
        addcdiv_(p, grad, denom, cast(now, p))
        following = -lr * mu_next / (1.0 - product_next)
        addcdiv_(p, state["exp_avg"], denom, cast(following, p))


class Lion(StackedOptimizer):
    """pytorch_optimizer.Lion: the sign of an interpolated momentum, decoupled (or fixed)
    weight decay."""

    def __init__(self, params: Any, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, weight_decouple: bool = True,
                 fixed_decay: bool = False, **given: Any) -> None:  # fmt: skip
        for option in ("use_gc", "adanorm", "cautious"):
            if given.pop(option, False):
                raise NotVectorizable(f"Lion's {option} has no stacked step")
        defaults = dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay,
                        weight_decouple=weight_decouple, fixed_decay=fixed_decay)  # fmt: skip
        super().__init__(params, defaults, given)

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Any], h: dict[str, Any]) -> None:
        lr, (beta1, beta2), decay = h["lr"], h["betas"], h["weight_decay"]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p)
        if nonzero(decay) and h["weight_decouple"]:
            p.mul_(cast(1 - decay * (1.0 if h["fixed_decay"] else lr), p))
        elif nonzero(decay):
            grad = add_scaled(grad, p, cast(decay, p))
        direction = state["exp_avg"].lerp(grad, cast(1 - beta1, p)).sign_()
        state["exp_avg"].lerp_(grad, cast(1 - beta2, p))
        add_scaled(p, direction, cast(-lr, p), inplace=True)


class ScheduleFreeAdamW(StackedOptimizer):
    """schedulefree.AdamWScheduleFree: trains at y, an interpolation of the iterates z and
    their average x, which it evaluates at. Its scalars (warm-up, lr_max, the averaging
    weight) are the package's Python arithmetic member by member, and its counters stay in
    the parameter groups as the package keeps them (`counters`: a group copies them back
    into each member's own optimizer after each step). `eval(k)` and `train(k)` move
    member k alone between y and x; without k, every member."""

    counters = ("k", "lr_max", "weight_sum", "scheduled_lr")

    def __init__(self, params: Any, lr: float = 0.0025, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, warmup_steps: int = 0,
                 r: float = 0.0, weight_lr_power: float = 2.0, k: int = 0,
                 weight_sum: float = 0.0, lr_max: float = -1.0, scheduled_lr: float = 0.0,
                 train_mode: bool = True, foreach: bool = True, **given: Any) -> None:  # fmt: skip
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power, k=k,
                        weight_sum=weight_sum, lr_max=lr_max, scheduled_lr=scheduled_lr,
                        train_mode=train_mode, foreach=foreach)  # fmt: skip
        super().__init__(params, defaults, given)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            scalars = self._scalars(group, len(group["params"][0]))
            for p in group["params"]:
                if p.grad is not None:
                    h = {key: cast(shaped_like(v, p), p) for key, v in scalars.items()}
                    self.update(p, p.grad, self.state[p], h)
            group["k"] += 1

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Any], h: dict[str, Any]) -> None:
        """The package's foreach step, one parameter."""
        if "z" not in state:
            state["z"] = p.clone()
            state["exp_avg_sq"] = torch.zeros_like(p)
        addcmul_(state["exp_avg_sq"].mul_(h["beta2"]), grad, grad, h["1-beta2"])
        denom = (state["exp_avg_sq"] / h["correction2"]).sqrt_().add_(h["eps"])
        grad = grad.div_(denom)
        if nonzero(h["weight_decay"]):
            add_scaled(grad, p, h["weight_decay"], inplace=True)
        p.lerp_(state["z"], h["ckp1"])
        add_scaled(p, grad, h["y_lr"], inplace=True)
        add_scaled(state["z"], grad, h["-lr"], inplace=True)

    def _scalars(self, group: dict[str, Any], size: int) -> dict[str, Value]:
        """Each coefficient of the step, a number or (K,) tensor, computed for each member
        as the package computes it; the group's counters updated."""
        k, rows = group["k"], []
        keys = ("lr", "warmup_steps", "r", "weight_lr_power", "lr_max", "weight_sum")
        beta1, beta2 = group["betas"]
        values = [members(group[key], size) for key in keys]
        for lr, warmup, r, power, lr_max, weight_sum, b1, b2 in zip(
            *values, members(beta1, size), members(beta2, size), strict=True
        ):
            lr = lr * ((k + 1) / warmup if k < warmup else 1.0)
            lr_max = max(lr, lr_max)
            weight = ((k + 1) ** r) * (lr_max**power)
            weight_sum = weight_sum + weight
            ckp1 = weight / weight_sum if weight_sum else 0
            rows.append(
                (lr, lr_max, weight_sum, ckp1, lr * (b1 * (1 - ckp1) - 1), 1 - b2 ** (k + 1))
            )
        lr, lr_max, weight_sum, ckp1, y_lr, correction2 = (
            packed(c) for c in zip(*rows, strict=True)
        )
        group.update(scheduled_lr=lr, lr_max=lr_max, weight_sum=weight_sum)
        return {
            "-lr": -lr, "ckp1": ckp1, "y_lr": y_lr, "beta2": beta2, "1-beta2": 1 - beta2,
            "correction2": correction2, "eps": group["eps"], "weight_decay": group["weight_decay"],
        }  # fmt: skip

    def eval(self, member: int | None = None) -> None:
        self._move(member, lambda beta1: 1 - 1 / beta1)

    def train(self, member: int | None = None) -> None:
        self._move(member, lambda beta1: 1 - beta1)

    @torch.no_grad()
    def _move(self, member: int | None, weight: Any) -> None:
        for group in self.param_groups:
            beta1 = group["betas"][0]
            for p in group["params"]:
                if "z" not in self.state[p]:
                    continue
                z = self.state[p]["z"]
                if member is None:
                    p.lerp_(z, cast(shaped_like(weight(beta1), p), p))
                else:  # the package's own call, on the member's slice
                    p[member].lerp_(z[member], weight(members(beta1, len(p))[member]))


def members(value: Value, size: int) -> list[Any]:
    """A hyperparameter's value for each of `size` members, as Python numbers."""
    return value.tolist() if isinstance(value, Tensor) else [value] * size


def packed(values: tuple[Any, ...]) -> Value:
    """The members' values as one number where they agree, else a (K,) float64 tensor."""
    if all(v == values[0] for v in values):
        return values[0]
    return torch.tensor(values, dtype=torch.float64)


def advance(state: dict[str, Any], p: Tensor, *moments: str) -> float:
    """The step count after this step (torch's: a float tensor, the same for every member),
    the moments made at the first."""
    if "step" not in state:
        state["step"] = torch.tensor(0.0)
        for name in moments:
            state[name] = torch.zeros_like(p)
    state["step"] += 1
    return state["step"].item()


def with_decay(p: Tensor, grad: Tensor, lr: Value, decay: Value, decoupled: bool) -> Tensor:
    """Weight decay as torch's Adam family applies it: decoupled, the parameter shrunk by
    lr * decay; coupled, decay * parameter added to the gradient."""
    if not nonzero(decay):
        return grad
    if decoupled:
        p.mul_(cast(1 - lr * decay, p))
        return grad
    return add_scaled(grad, p, cast(decay, p))


# The optimizers with a stacked step, by the `_target_` they stand for.
STACKED: dict[str, type[StackedOptimizer]] = {
    "torch.optim.SGD": SGD,
    "torch.optim.Adam": Adam,
    "torch.optim.AdamW": AdamW,
    "torch.optim.NAdam": NAdam,
    "pytorch_optimizer.Lion": Lion,
    "schedulefree.AdamWScheduleFree": ScheduleFreeAdamW,
}
