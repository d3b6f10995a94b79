"""Each stacked step (optexp.vector.optimizers) against the optimizer it stands for: K
members with their own hyperparameters, stepped as one stack, equal bit for bit, member by
member, to K separate optimizers of torch's (single-tensor) or pytorch_optimizer's own, and
a member's slice of the state equal to what its own optimizer holds."""

from __future__ import annotations

import pytest
import torch
from pytorch_optimizer import Lion as ReferenceLion
from schedulefree import AdamWScheduleFree

from optexp.vector import optimizers
from optexp.vector.stack import member_state
from optexp.vector.steps import agreed

SHAPES = [(5, 3), (3,)]
STEPS = 25

# (stacked class, reference class, each member's hyperparameters)
CASES = {
    "sgd": (optimizers.SGD, torch.optim.SGD, [
        {"lr": 0.1, "weight_decay": 0.0},
        {"lr": 0.03, "weight_decay": 0.01},
    ]),
    "momentum": (optimizers.SGD, torch.optim.SGD, [
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.0, "weight_decay": 1e-3},
        {"lr": 0.02, "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.0},
        {"lr": 0.01, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.1},
    ]),
    "nesterov": (optimizers.SGD, torch.optim.SGD, [
        {"lr": 0.05, "momentum": 0.9, "nesterov": True},
        {"lr": 0.02, "momentum": 0.99, "nesterov": True},
    ]),
    "adam": (optimizers.Adam, torch.optim.Adam, [
        {"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
        {"lr": 3e-3, "betas": (0.5, 0.99), "eps": 1e-6, "weight_decay": 0.1},
    ]),
    "adamw": (optimizers.AdamW, torch.optim.AdamW, [
        {"lr": 1e-2, "betas": (0.9, 0.999), "weight_decay": 0.01},
        {"lr": 2e-3, "betas": (0.8, 0.95), "weight_decay": 0.5},
    ]),
    "nadamw": (optimizers.NAdam, torch.optim.NAdam, [
        {"lr": 1e-2, "betas": (0.9, 0.999), "weight_decay": 0.01, "momentum_decay": 1000.0,
         "decoupled_weight_decay": True},
        {"lr": 4e-3, "betas": (0.7, 0.99), "weight_decay": 0.3, "momentum_decay": 4e-3,
         "decoupled_weight_decay": True},
    ]),
    "nadam": (optimizers.NAdam, torch.optim.NAdam, [
        {"lr": 1e-2, "betas": (0.9, 0.999), "weight_decay": 0.01},
        {"lr": 4e-3, "betas": (0.6, 0.99), "weight_decay": 0.0},
    ]),
    "lion": (optimizers.Lion, ReferenceLion, [
        {"lr": 1e-3, "betas": (0.9, 0.99), "weight_decay": 0.1},
        {"lr": 3e-4, "betas": (0.95, 0.98), "weight_decay": 1.0},
    ]),
    "schedule_free_adamw": (optimizers.ScheduleFreeAdamW, AdamWScheduleFree, [
        {"lr": 1e-2, "betas": (0.9, 0.999), "weight_decay": 0.0, "warmup_steps": 5,
         "r": 0.0, "weight_lr_power": 2.0},
        {"lr": 3e-3, "betas": (0.7, 0.99), "weight_decay": 0.1, "warmup_steps": 0,
         "r": 0.0, "weight_lr_power": 2.0},
        {"lr": 3e-2, "betas": (0.95, 0.999), "weight_decay": 0.01, "warmup_steps": 10,
         "r": 1.0, "weight_lr_power": 0.0},
    ]),
}  # fmt: skip


def gradients(step: int, k: int) -> list[torch.Tensor]:
    """A fixed, member- and step-dependent gradient per parameter, signs varying."""
    generator = torch.Generator().manual_seed(1000 * step + k)
    return [torch.randn(shape, generator=generator) for shape in SHAPES]


def start(k: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(k)
    return [torch.randn(shape, generator=generator) for shape in SHAPES]


def stacked_groups(params: list[torch.Tensor], members: list[dict]) -> list[dict]:
    """One group, each hyperparameter as the group sets it: a number or a (K,) tensor."""
    keys = members[0].keys()
    values = {key: agreed([m[key] for m in members], torch.device("cpu")) for key in keys}
    return [{"params": params, **values}]


@pytest.mark.parametrize("name", CASES)
def test_a_stacked_step_is_each_members_own_update(name):
    stacked_class, reference_class, members = CASES[name]
    k_members = len(members)
    separate = [[p.clone().requires_grad_() for p in start(k)] for k in range(k_members)]
    references = [reference_class(ps, **h) for ps, h in zip(separate, members, strict=True)]
    for reference in references:
        getattr(reference, "train", lambda: None)()  # Schedule-Free's: steps need train mode
    stack = [torch.stack([start(k)[i] for k in range(k_members)]).requires_grad_()
             for i in range(len(SHAPES))]  # fmt: skip
    stacked = stacked_class(stacked_groups(stack, members))
    for step in range(STEPS):
        for k, (params, reference) in enumerate(zip(separate, references, strict=True)):
            for p, g in zip(params, gradients(step, k), strict=True):
                p.grad = g
            reference.step()
        for i, p in enumerate(stack):
            p.grad = torch.stack([gradients(step, k)[i] for k in range(k_members)])
        stacked.step()
    compared = 0
    for k in range(k_members):
        for p, own in zip(stack, separate[k], strict=True):
            torch.testing.assert_close(p[k], own, rtol=0, atol=0)
        # the member's slice of the state is what its own optimizer holds
        state = member_state(stacked, k)["state"]
        for i, p in enumerate(separate[k]):
            own = {key: v for key, v in references[k].state[p].items() if torch.is_tensor(v)}
            assert own.keys() <= state[i].keys(), (own.keys(), state[i].keys())
            for key, value in own.items():
                torch.testing.assert_close(state[i][key], value, rtol=0, atol=0)
                compared += 1
    assert compared or name == "sgd"  # plain SGD keeps no state


def test_schedule_free_evaluation_weights_are_each_members_own():
    """`eval(k)` moves member k alone to the package's x; `eval()` every member."""
    _, _, members = CASES["schedule_free_adamw"]
    separate = [[p.clone().requires_grad_() for p in start(k)] for k in range(len(members))]
    references = [AdamWScheduleFree(ps, **h) for ps, h in zip(separate, members, strict=True)]
    stack = [torch.stack([start(k)[i] for k in range(len(members))]).requires_grad_()
             for i in range(len(SHAPES))]  # fmt: skip
    stacked = optimizers.ScheduleFreeAdamW(stacked_groups(stack, members))
    for step in range(3):
        for k, (params, reference) in enumerate(zip(separate, references, strict=True)):
            reference.train()
            for p, g in zip(params, gradients(step, k), strict=True):
                p.grad = g
            reference.step()
        for i, p in enumerate(stack):
            p.grad = torch.stack([gradients(step, k)[i] for k in range(len(members))])
        stacked.step()
    training = [p.detach().clone() for p in stack]
    for reference in references:
        reference.eval()
    stacked.eval(1)
    for i, p in enumerate(stack):
        torch.testing.assert_close(p[1], separate[1][i], rtol=0, atol=0)
        for k in (0, 2):  # the others train on
            torch.testing.assert_close(p[k], training[i][k], rtol=0, atol=0)
    stacked.train(1)
    stacked.eval()
    for k in range(len(members)):
        for p, own in zip(stack, separate[k], strict=True):
            torch.testing.assert_close(p[k], own, rtol=0, atol=0)


def test_a_stacked_step_refuses_what_it_does_not_take_per_member():
    params = [torch.zeros(2, 3, requires_grad=True)]
    with pytest.raises(optimizers.NotVectorizable, match="amsgrad"):
        optimizers.Adam(params, amsgrad=True)
    with pytest.raises(optimizers.NotVectorizable, match="maximize"):
        optimizers.SGD(params, maximize=True)
    with pytest.raises(optimizers.NotVectorizable, match="cautious"):
        optimizers.Lion(params, cautious=True)
