"""What a value may be: a test and the words that tell the user what is allowed, and
which parameter of which part gets which rule (PARAMETER_RULES).

`optexp.config` attaches rules to the trainer's knobs, this module's table to the parts'
parameters; `optexp.checks` applies them. Plain Python: no torch, no Hydra.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

FLOAT32_MAX = 3.4028234663852886e38  # beyond it a value overflows when torch uses it
SEED_MAX = 2**32 - 1  # numpy's legacy seeding accepts [0, 2**32 - 1]
INT_MAX = 2**31 - 1  # far beyond any sensible count, and safe in torch's int64 arithmetic


class Rule(NamedTuple):
    test: Callable[[Any], bool]
    allowed: str  # as the error message says it
    nullable: bool = False  # null is allowed too

    def or_null(self, allowed: str | None = None) -> Rule:
        return Rule(self.test, allowed or f"null or {self.allowed}", nullable=True)

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        try:
            return bool(self.test(value))
        except TypeError:  # a list where a number goes, ...
            return False


def number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def int_at_least(low: int) -> Rule:
    return Rule(lambda v: integer(v) and low <= v <= INT_MAX, f"an integer >= {low}")


def in_range(low: float, high: float, closed: str = "[]") -> Rule:
    """A number between `low` and `high`; `closed` says which ends are allowed: "[)"..."""
    left, right = closed

    def test(v: Any) -> bool:
        above = v >= low if left == "[" else v > low
        below = v <= high if right == "]" else v < high
        return number(v) and above and below

    return Rule(test, f"a number in {left}{low:g}, {high:g}{right}")


def one_of(*allowed: Any) -> Rule:
    return Rule(lambda v: v in allowed and not isinstance(v, bool), " | ".join(map(str, allowed)))


def list_of(item: Rule, allowed: str) -> Rule:
    return Rule(lambda v: isinstance(v, list) and all(item.accepts(x) for x in v), allowed)


def device(v: Any) -> bool:
    kind, _, index = str(v).partition(":")
    return kind in ("auto", "cpu", "cuda", "mps") and (not index or index.isdigit())


COUNT = int_at_least(1)
COUNT0 = int_at_least(0)
POSITIVE = Rule(lambda v: number(v) and v > 0, "a number > 0")
NON_NEGATIVE = Rule(lambda v: number(v) and v >= 0, "a number >= 0")
FRACTION = in_range(0, 1, "[)")
PROBABILITY = in_range(0, 1, "[]")
OPEN_FRACTION = in_range(0, 1, "()")
BOOL = Rule(lambda v: isinstance(v, bool), "true | false")
SEED = Rule(
    lambda v: integer(v) and 0 <= v <= SEED_MAX,
    f"an integer in [0, {SEED_MAX}] (what numpy accepts)",
)
PATH = Rule(lambda v: isinstance(v, str) and bool(v.strip()), "a path")
DEVICE = Rule(device, "auto | cpu | cuda | cuda:N | mps")


BETAS = Rule(
    lambda v: isinstance(v, list) and len(v) == 2 and all(FRACTION.accepts(b) for b in v),
    "two numbers in [0, 1), e.g. [0.9, 0.999]",
)
GAMMA = in_range(0, 1e3, "(]")
ADAM = {"betas": BETAS, "eps": POSITIVE, "amsgrad": BOOL}
SGD = {"momentum": FRACTION, "dampening": PROBABILITY, "nesterov": BOOL}
RMSPROP = {"alpha": FRACTION, "eps": POSITIVE, "momentum": FRACTION, "centered": BOOL}
DROPOUT_AND_NORM = {"dropout": FRACTION, "batch_norm": BOOL}
WIDTHS = list_of(COUNT, "a list of integers >= 1, e.g. [32, 64]")
# torch.optim's switches (the objective's sign, the implementation); pytorch_optimizer's
# classes read maximize and foreach alike. Each optimizer takes some of them.
SWITCHES = {
    "maximize": BOOL,
    "foreach": BOOL.or_null(),
    "capturable": Rule(
        lambda v: v is False,
        "false (optexp captures no CUDA graph of the step: true only slows it, or fails on CPU)",
    ),
    "differentiable": Rule(
        lambda v: v is False,
        "false (optexp steps leaf parameters in place: autograd cannot go through the step)",
    ),
    "fused": BOOL.or_null(),
}


def switches(*names: str) -> dict[str, Rule]:
    return {name: SWITCHES[name] for name in names}


# optimizer.groups (optexp.optim.groups): a list of rules, each a mapping with a `match`.
GROUP_RULES = Rule(
    lambda v: (
        isinstance(v, list)
        and bool(v)
        and all(isinstance(r, dict) and isinstance(r.get("match") or {}, dict) for r in v)
    ),
    "a list of rules, each {match: {conditions}, hyperparameters...}, e.g. [{match: {}}]",
)
SCHEDULE_FREE = {
    "warmup_steps": COUNT0,
    "r": NON_NEGATIVE,
    "weight_lr_power": NON_NEGATIVE,
    "foreach": BOOL.or_null(),
}
GROWTH = Rule(lambda v: number(v) and v >= 1, "a number >= 1 (absent: unbounded)")
# A function that YAML cannot write (ADOPT's clip_lambda): only null (none) is allowed.
NO_FUNCTION = Rule(lambda v: False, "null (absent: the class's own function)", nullable=True)
# The character-level text sets' knobs (optexp.data.text.char_windows)
CHAR_WINDOWS = {"seq_len": COUNT, "max_chars": int_at_least(2).or_null(), "stride": COUNT}

# The parameters of the parts, keyed by what they check: a group's name for the keys
# every target of the group reads alike (any optimizer's lr, a user's own optimizer
# included), a target's import path for the keys whose meaning is that target's (SGD's
# momentum). tests/test_walk_inputs.py tries bad values on every knob of every option
# file, and fails for a knob that has no rule here. An absent key is not checked, nor
# null where the rule allows it; non-finite numbers are refused for every key.
PARAMETER_RULES: dict[str, dict[str, Rule]] = {
    "optimizer": {
        "lr": POSITIVE,
        "weight_decay": NON_NEGATIVE,
        "full_batch": BOOL,  # optexp's own keys (optexp.parts.OWN_KEYS)
        "regularize_bias_and_norm": BOOL,
        "bn_batches": COUNT0,
        "groups": GROUP_RULES,
    },
    "schedulefree.AdamWScheduleFree": {"betas": BETAS, "eps": POSITIVE, **SCHEDULE_FREE},
    "schedulefree.SGDScheduleFree": {"momentum": OPEN_FRACTION, **SCHEDULE_FREE},
    "pytorch_optimizer.Muon": {
        "momentum": FRACTION,
        "nesterov": BOOL,
        "ns_steps": COUNT,
        "adamw_lr": POSITIVE,
        "adamw_betas": BETAS,
        "adamw_wd": NON_NEGATIVE,
        "adamw_eps": POSITIVE,
        "weight_decouple": BOOL,
        "use_adjusted_lr": BOOL,
        **switches("maximize", "foreach"),
    },
    "torch.optim.SGD": SGD | switches("maximize", "foreach", "differentiable", "fused"),
    "torch.optim.Adam": ADAM | SWITCHES | {"decoupled_weight_decay": BOOL},
    "torch.optim.AdamW": ADAM | SWITCHES,
    "torch.optim.Adagrad": {
        "lr_decay": NON_NEGATIVE,
        "initial_accumulator_value": NON_NEGATIVE,
        "eps": POSITIVE,
        **switches("maximize", "foreach", "differentiable", "fused"),
    },
    "torch.optim.RMSprop": {
        **RMSPROP,
        **switches("maximize", "foreach", "capturable", "differentiable"),
    },
    "optexp.optim.textbook.Momentum": {"momentum": FRACTION},
    "optexp.optim.textbook.AdaGrad": {"eps": POSITIVE},
    "optexp.optim.textbook.RMSprop": RMSPROP,
    "optexp.optim.textbook.Adam": ADAM,
    "torch.optim.NAdam": {
        "betas": BETAS,
        "eps": POSITIVE,
        "momentum_decay": NON_NEGATIVE,
        "decoupled_weight_decay": BOOL,
        **switches("maximize", "foreach", "capturable", "differentiable"),
    },
    "pytorch_optimizer.Lion": {
        "betas": BETAS,
        "weight_decouple": BOOL,
        "fixed_decay": BOOL,
        **switches("maximize", "foreach"),
    },
    "pytorch_optimizer.ADOPT": {
        "betas": BETAS,
        "eps": POSITIVE,
        "weight_decouple": BOOL,
        "fixed_decay": BOOL,
        "clip_lambda": NO_FUNCTION,
        **switches("maximize", "foreach"),
    },
    "pytorch_optimizer.SOAP": {
        "betas": BETAS,
        "shampoo_beta": FRACTION.or_null(),
        "eps": POSITIVE,
        "precondition_frequency": COUNT,
        "max_precondition_dim": COUNT,
        "merge_dims": BOOL,
        "precondition_1d": BOOL,
        "correct_bias": BOOL,
        "normalize_gradient": BOOL,
        "data_format": one_of("channels_first", "channels_last"),
        "maximize": BOOL,
    },
    "prodigyopt.Prodigy": {
        "lr": POSITIVE,  # 1; far from it, optexp.checks.advise_learning_rate_free warns
        "betas": BETAS,
        "beta3": FRACTION.or_null(),
        "eps": POSITIVE,
        "decouple": BOOL,
        "use_bias_correction": BOOL,
        "safeguard_warmup": BOOL,
        "d0": POSITIVE,
        "d_coef": POSITIVE,
        "growth_rate": GROWTH,
        "fsdp_in_use": BOOL,
        "slice_p": COUNT,
    },
    "torch.optim.LBFGS": {
        "max_iter": COUNT,
        "max_eval": COUNT.or_null(),
        "history_size": COUNT,
        "line_search_fn": one_of("strong_wolfe").or_null("null | strong_wolfe"),
        "tolerance_grad": NON_NEGATIVE,
        "tolerance_change": NON_NEGATIVE,
        "maximize": BOOL,
    },
    "optexp.optim.sam.SAM": {
        "base": Rule(
            lambda v: isinstance(v, str) and bool(v.strip()),
            "an optimizer class by import path, e.g. torch.optim.SGD",
        ),
        "rho": POSITIVE,
        "adaptive": BOOL,
        **SGD,  # the base optimizer's, when it is SGD (the default)
        **switches("maximize", "foreach", "differentiable", "fused"),
    },
    "scheduler": {"interval": one_of("epoch", "step"), "warmup_epochs": NON_NEGATIVE},
    "torch.optim.lr_scheduler.ConstantLR": {"factor": in_range(0, 1, "(]"), "total_iters": COUNT0},
    "torch.optim.lr_scheduler.StepLR": {"step_size": COUNT, "gamma": GAMMA},
    "torch.optim.lr_scheduler.ExponentialLR": {"gamma": GAMMA},
    "torch.optim.lr_scheduler.CosineAnnealingWarmRestarts": {
        "T_0": COUNT,
        "T_mult": COUNT,
        "eta_min": NON_NEGATIVE,
    },
    "optexp.optim.schedules.cosine": {"eta_min": NON_NEGATIVE},
    "optexp.optim.schedules.CyclicSine": {"max_lr": POSITIVE, "step_size": COUNT},
    "optexp.optim.schedules.wsd": {
        "cooldown_fraction": in_range(0, 1, "(]"),
        "cooldown_shape": one_of("linear", "1-sqrt"),
    },
    "torch.optim.lr_scheduler.CyclicLR": {
        "base_lr": POSITIVE,
        "max_lr": POSITIVE,
        "step_size_up": COUNT,
        "step_size_down": COUNT.or_null(),
        "gamma": GAMMA,
        "cycle_momentum": BOOL,
    },
    "torch.optim.lr_scheduler.OneCycleLR": {
        "max_lr": POSITIVE,
        "pct_start": OPEN_FRACTION,
        "anneal_strategy": one_of("cos", "linear"),
        "div_factor": POSITIVE,
        "final_div_factor": POSITIVE,
        "three_phase": BOOL,
        "cycle_momentum": BOOL,
    },
    "torch.optim.lr_scheduler.ReduceLROnPlateau": {
        "factor": in_range(0, 1, "()"),
        "patience": COUNT0,
        "threshold": NON_NEGATIVE,
        "threshold_mode": one_of("rel", "abs"),
        "cooldown": COUNT0,
        "min_lr": NON_NEGATIVE,
    },
    "torch.nn.CrossEntropyLoss": {"label_smoothing": PROBABILITY},
    "torch.nn.MultiMarginLoss": {"margin": POSITIVE, "p": one_of(1, 2)},
    "optexp.models.mlp": {
        "hidden": list_of(COUNT, "a list of integers >= 1, e.g. [128, 128]"),
        **DROPOUT_AND_NORM,
    },
    "optexp.models.cnn": {"channels": WIDTHS, **DROPOUT_AND_NORM},
    "optexp.models.gru": {"hidden": COUNT, "layers": COUNT, "bidirectional": BOOL},
    "optexp.models.quadratic": {"hessian_seed": SEED},
    "optexp.models.transformer": {
        "width": COUNT,
        "heads": COUNT,
        "depth": COUNT,
        "vocab_size": COUNT.or_null(),
    },
    "optexp.models.cnn1d": {
        "channels": WIDTHS,
        "kernel_sizes": list_of(COUNT, "a list of integers >= 1, e.g. [5, 3, 3]"),
        "stride": COUNT,
        **DROPOUT_AND_NORM,
    },
    "dataset": {
        "val_fraction": OPEN_FRACTION,
        "test_fraction": FRACTION,
        "seed": SEED,
        "train_size": int_at_least(2).or_null(),  # at most the training split: its function's
    },
    "optexp.data.datasets.torchvision_set": {"download": BOOL},
    "optexp.data.files.image_folder": {
        "image_size": COUNT,
        "workers": COUNT0.or_null("null, or an integer >= 0 (0: in-process)"),
    },
    "optexp.data.generated.synthetic": {
        "noise": NON_NEGATIVE,
        "n_samples": int_at_least(10),
        "num_classes": int_at_least(2),
    },
    "optexp.data.generated.mnist1d": {"num_samples": int_at_least(20), "generator_seed": SEED},
    "optexp.data.generated.mnist1d_autoencoder": {
        "num_samples": int_at_least(20),
        "generator_seed": SEED,
    },
    "optexp.data.generated.noisy_quadratic": {
        "dim": int_at_least(2),
        "n_samples": int_at_least(10),
        "noise": NON_NEGATIVE,
    },
    "optexp.data.generated.token_lookup": {
        "length": int_at_least(2),
        "vocab": int_at_least(2),
        "n_samples": int_at_least(10),
    },
    "optexp.data.text.lee_news": CHAR_WINDOWS,
    "optexp.data.text.text_file": {
        **CHAR_WINDOWS,
        "url": Rule(lambda v: isinstance(v, str) and "://" in v, "a web address").or_null(),
    },
    "optexp.data.augment.FlipRotateJitter": {
        "flip": PROBABILITY,
        "degrees": in_range(0, 180),
        "brightness": PROBABILITY,
        "contrast": PROBABILITY,
        "saturation": PROBABILITY,
    },
    "optexp.data.augment.CropFlip": {"padding": COUNT0, "flip": PROBABILITY},
    "optexp.data.augment.Mix": {
        "kind": one_of("mixup", "cutmix", "both"),
        "alpha": POSITIVE,
        "p": PROBABILITY,
    },
    "regularizer": {"regularize_bias_and_norm": BOOL},
    "optexp.regularizers.NormPenalty": {
        "l1": NON_NEGATIVE,
        "l2": NON_NEGATIVE,
        "match": Rule(lambda v: isinstance(v, dict), "conditions, e.g. {min_ndim: 2}").or_null(),
    },
}


def parameter_rules(group: str, target: str | None) -> dict[str, Rule]:
    """The rules on the parameters of `group`'s part when it builds `target`."""
    return PARAMETER_RULES.get(group, {}) | PARAMETER_RULES.get(target or "", {})
