"""Parameter groups chosen by rules in the optimizer's YAML (`optimizer.groups`): each
rule's `match` says which parameters it takes by what a user can see of them, and its other
keys are that group's hyperparameters (an lr of its own, no weight decay, Muon's
`use_muon`). A parameter goes to the first rule that matches it; every trainable
parameter must land in a group, and every rule must take at least one.

    groups:
      - match: {min_ndim: 2, output: false, layer: [Linear, Conv1d, Conv2d]}
        use_muon: true
      - match: {}        # every parameter left
        use_muon: false
        lr: 3.0e-4

`match` conditions, all of which must hold: `min_ndim` / `max_ndim` (the tensor's
dimensions), `layer` (the class names of the module holding it), `name` (a glob on its
name, e.g. "*.bias"), `output` (whether it is in the output layer: the module holding the
model's last parameter)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from optexp.errors import ConfigError

Condition = Callable[[Any, "Parameter"], bool]


class Parameter:
    """What a rule can see of a parameter."""

    def __init__(self, name: str, tensor: nn.Parameter, layer: nn.Module, output: bool) -> None:
        self.name, self.tensor, self.layer, self.output = name, tensor, layer, output


CONDITIONS: dict[str, Condition] = {
    "min_ndim": lambda value, p: p.tensor.ndim >= value,
    "max_ndim": lambda value, p: p.tensor.ndim <= value,
    "layer": lambda value, p: type(p.layer).__name__ in value,
    "name": lambda value, p: fnmatch.fnmatchcase(p.name, value),
    "output": lambda value, p: p.output == value,
}


def parameters(model: nn.Module) -> list[Parameter]:
    """The model's trainable parameters, each with its module and whether it is in the
    output layer."""
    found = [
        (f"{prefix}.{name}" if prefix else name, tensor, module)
        for prefix, module in model.named_modules()
        for name, tensor in module.named_parameters(recurse=False)
        if tensor.requires_grad
    ]
    last = found[-1][2] if found else None
    return [Parameter(name, tensor, module, module is last) for name, tensor, module in found]


def rule_groups(model: nn.Module, rules: list[dict[str, Any]], model_name: str) -> list[dict]:
    """The optimizer's parameter groups by `rules`, in their order: each rule's keys but
    `match`, with the parameters it takes. Refused (one line) when a rule takes nothing or
    a parameter is left without a group."""
    left, groups = parameters(model), []
    for index, rule in enumerate(rules):
        key = f"optimizer.groups[{index}].match"
        taken = matching(left, dict(rule.get("match") or {}), key, model_name)
        left = [p for p in left if p not in taken]
        settings = {k: v for k, v in rule.items() if k != "match"}
        groups.append({"params": [p.tensor for p in taken], "names": [p.name for p in taken]})
        groups[-1] |= settings
    if left:
        names = ", ".join(p.name for p in left[:3]) + (", ..." if len(left) > 3 else "")
        raise ConfigError(
            "optimizer.groups",
            f"{len(rules)} rules",
            "rules that give every parameter a group (end with `- match: {}`)",
            problem=f"leave {len(left)} parameters of model={model_name} without one ({names})",
        )
    return groups


def matching(
    candidates: list[Parameter], match: dict[str, Any], key: str, model_name: str
) -> list[Parameter]:
    """The candidates that meet every condition of `match` (the setting `key`); refused
    when a condition is unknown or none meets them all."""
    for name in match:
        if name not in CONDITIONS:
            raise ConfigError(
                f"{key}.{name}",
                match[name],
                f"a condition of {', '.join(CONDITIONS)}",
                problem="is not a condition a rule can test",
            )
    taken = [p for p in candidates if all(CONDITIONS[k](v, p) for k, v in match.items())]
    if not taken:
        raise ConfigError(
            key,
            match,
            f"a rule that takes at least one parameter of model={model_name}",
            problem=f"matches none of the parameters of model={model_name} left to it",
        )
    return taken


def exempt_bias_and_norm(groups: list[dict[str, Any]], weight_decay: float) -> list[dict]:
    """timm's rule inside rule groups (`regularize_bias_and_norm: false`, the default): the
    biases and normalization weights (1-D tensors) of a group that inherits the
    optimizer's weight decay go to a group of their own without it. A rule that sets its
    own `weight_decay` keeps it."""
    if not weight_decay:
        return groups
    out = []
    for group in groups:
        flat = [i for i, p in enumerate(group["params"]) if p.ndim <= 1]
        if "weight_decay" in group or not flat:
            out.append(group)
            continue
        kept = [i for i in range(len(group["params"])) if i not in flat]
        for indices, decay in ((kept, {}), (flat, {"weight_decay": 0.0})):
            if indices:
                picked = {k: [group[k][i] for i in indices] for k in ("params", "names")}
                out.append(group | picked | decay)
    return out


def describe(groups: list[dict[str, Any]]) -> str:
    """One line for groups that rules made (none: ""): each one's settings that differ
    between the groups, its size and its first parameter names."""
    if not any("names" in group for group in groups):
        return ""
    shared = set.intersection(*(set(group) for group in groups)) - {"params", "names", "initial_lr"}
    differ = sorted(k for k in shared if len({repr(group[k]) for group in groups}) > 1)
    parts = []
    for index, group in enumerate(groups):
        settings = " ".join(f"{k}={group.get(k)}" for k in differ)
        count = sum(p.numel() for p in group["params"])
        size = f"{len(group['params'])} tensors, {count:,} values"
        names = group.get("names", [])
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        parts.append(f"group {index} ({settings}): {size}: {shown}")
    return "; ".join(parts)
