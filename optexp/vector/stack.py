"""K copies of one model as one: every parameter and buffer stacked along a new first
dimension, the forward run under `torch.func.vmap` over `functional_call`, and each
member's own module kept as a view of its slice, so that evaluating, checkpointing and
measuring a member is the ordinary code on an ordinary module."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap


class Stack:
    """The stacked parameters (`params`, the optimizer's leaves) and buffers of `models`,
    each model's tensors turned into views of its slice."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.size = len(models)
        self.names = [name for name, _ in models[0].named_parameters()]
        self.params = [
            torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
            for n in self.names
        ]
        self.buffer_names = [name for name, _ in models[0].named_buffers()]
        self.buffers = [
            torch.stack([dict(m.named_buffers())[n] for m in models]) for n in self.buffer_names
        ]
        for k, model in enumerate(models):  # each member reads and writes its slice
            for tensor, stacked in zip(model.parameters(), self.params, strict=True):
                tensor.data = stacked.data[k]
            for tensor, stacked in zip(model.buffers(), self.buffers, strict=True):
                tensor.data = stacked[k]
            model.register_state_dict_post_hook(copies)
        self.template = copy.deepcopy(models[0]).to("meta")  # the structure, no storage
        self.layers = grouped_layers(self.template, self.names)

    def forward(self, x: Tensor, shared: bool) -> Tensor:
        """Every member's output on `x`: one batch for all (`shared`), or one per member
        stacked along the first dimension. Dropout draws differently for each member."""
        if self.layers is not None:
            return self._grouped(x, shared)
        return vmap(self._member, in_dims=(0, 0, None if shared else 0), randomness="different")(
            dict(zip(self.names, self.params, strict=True)),
            dict(zip(self.buffer_names, self.buffers, strict=True)),
            x,
        )

    def _member(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def _grouped(self, x: Tensor, shared: bool) -> Tensor:
        """The MLP's forward as batched matrix products: what vmap computes, without its
        per-operation cost (benchmarks/RESULTS.md)."""
        assert self.layers is not None
        for module, index in self.layers:
            if isinstance(module, nn.Flatten):
                x = x.flatten(1 if shared else 2)
            elif isinstance(module, nn.Linear):
                weight, bias = self.params[index], self.params[index + 1]
                x = x.expand(self.size, *x.shape) if shared else x
                x, shared = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2)), False
            else:  # elementwise: on (K, B, H), dropout draws for each member apart
                x = module(x)
        return x

    @torch.no_grad()
    def grad_norms(self) -> Tensor:
        """(K, P): each member's gradient norm of each parameter tensor."""
        return torch.stack(
            [
                torch.zeros(self.size, device=p.device)
                if p.grad is None
                else torch.linalg.vector_norm(p.grad.flatten(1), dim=1).float()
                for p in self.params
            ],
            dim=1,
        )

    @torch.no_grad()
    def clip(self, grad_norms: Tensor, max_norm: float) -> None:
        """Each member's gradients scaled down to a global norm of `max_norm`, as
        `clip_grad_norm_` does for one run."""
        total = torch.linalg.vector_norm(grad_norms, dim=1)
        scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(scale.view(-1, *[1] * (p.ndim - 1)).to(p.grad.dtype))


def copies(module: nn.Module, state: dict[str, Any], prefix: str, metadata: Any) -> None:
    """A member's state_dict holds copies of its slices: torch.save writes a view's whole
    storage, the stack of every member."""
    for key, value in state.items():
        if isinstance(value, Tensor):
            state[key] = value.clone()


# Modules that act on each element alone: the same on a stack of members' activations.
ELEMENTWISE_MODULES = (
    nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Identity, nn.Dropout
)  # fmt: skip


def grouped_layers(template: nn.Module, names: list[str]) -> list[tuple[nn.Module, int]] | None:
    """An MLP (a Sequential of Flatten first, Linear layers with biases and elementwise
    modules after the first Linear) as (module, index of its weight in `names`); None for
    any other model, which vmap runs."""
    if not isinstance(template, nn.Sequential):
        return None
    layers, linear_seen = [], False
    for position, module in enumerate(template):
        if isinstance(module, nn.Flatten) and position == 0 and module.start_dim == 1:
            layers.append((module, -1))
        elif isinstance(module, nn.Linear) and module.bias is not None:
            layers.append((module, names.index(f"{position}.weight")))
            linear_seen = True
        elif isinstance(module, ELEMENTWISE_MODULES) and linear_seen:
            layers.append((module, -1))
        else:
            return None
    return layers


class MemberOptimizer:
    """Member `k`'s view of the stacked optimizer, for what is read of a run's own: its
    parameter groups (`own`: its own optimizer's, whose hyperparameters its schedule sets
    and the stacked step reads), the state its checkpoint keeps (`member_state`)."""

    def __init__(self, stacked: torch.optim.Optimizer, k: int, own: torch.optim.Optimizer) -> None:
        self.stacked, self.k, self.own = stacked, k, own

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.own.param_groups

    def state_dict(self) -> dict[str, Any]:
        return member_state(self.stacked, self.k) | {
            "param_groups": self.own.state_dict()["param_groups"]
        }


class MemberModes:
    """Member `k`'s `eval()` and `train()` of a stacked optimizer that evaluates at other
    weights (Schedule-Free's x): its slices moved alone, the other members left training."""

    def __init__(self, stacked: Any, k: int) -> None:
        self.stacked, self.k = stacked, k

    def eval(self) -> None:
        self.stacked.eval(self.k)

    def train(self) -> None:
        self.stacked.train(self.k)


def member_state(optimizer: torch.optim.Optimizer, k: int) -> dict[str, Any]:
    """Member `k`'s slice of the stacked optimizer's state: the state dict its own run's
    optimizer would have (per-parameter tensors sliced, step counts as they are)."""
    state = optimizer.state_dict()
    shapes = {i: p.shape for i, p in enumerate(_params(optimizer))}
    sliced = {
        i: {
            key: v[k].clone() if per_member(optimizer, key, v, shapes[i]) else v
            for key, v in entry.items()
        }
        for i, entry in state["state"].items()
    }
    return {"state": sliced, "param_groups": state["param_groups"]}


def stacked_state(optimizer: torch.optim.Optimizer, states: Sequence[dict[str, Any]]) -> None:
    """Load the members' optimizer states (`member_state`'s) into the stacked optimizer."""
    params = _params(optimizer)
    first = states[0]
    merged = {
        i: {
            key: torch.stack([s["state"][i][key] for s in states])
            if per_member(optimizer, key, v, params[i].shape, member=True)
            else v
            for key, v in entry.items()
        }
        for i, entry in first["state"].items()
    }
    optimizer.load_state_dict(
        {"state": merged, "param_groups": optimizer.state_dict()["param_groups"]}
    )


def per_member(
    optimizer: torch.optim.Optimizer, key: str, value: Any, shape: torch.Size, member: bool = False
) -> bool:
    """Whether a state entry is one per member: shaped as the parameter (a member's as its
    slice, with `member`), or named per member by a stacked step (`per_member_state`)."""
    if not isinstance(value, Tensor):
        return False
    if key in getattr(optimizer, "per_member_state", ()):
        return True
    return bool(value.ndim) and value.shape == (shape[1:] if member else shape)


def _params(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]
