"""Parameter groups by rules (`optimizer.groups`) and Muon, their first user: which
parameter lands in which group, refusals in one line, per-group learning rates under a
schedule, Muon's update against torch's own, and an exact resume."""

from __future__ import annotations

import pytest
import torch

from optexp.errors import ConfigError
from optexp.optim.groups import describe
from optexp.parts import build_parts
from optexp.train import run
from tests.resume import assert_resumes_exactly

QUICK = ("trainer.tensorboard=false", "trainer.early_stopping.enabled=false")
CNN = ("model=cnn", "model.channels=[4,8]", "trainer.batch_size=64", *QUICK)


def names(group: dict) -> set[str]:
    return set(group["names"])


def test_muon_takes_the_hidden_matrices_and_adamw_every_other_parameter(make_cfg):
    parts = build_parts(make_cfg("optimizer=muon", *CNN))
    muon, adamw = parts.optimizer.param_groups
    every = {name for name, p in parts.model.named_parameters() if p.requires_grad}
    assert names(muon) | names(adamw) == every and not names(muon) & names(adamw)
    output = max(every)  # the last layer's weight and bias: the head, to AdamW
    assert all(parts.model.get_parameter(n).ndim >= 2 for n in names(muon))
    assert {n.rsplit(".", 1)[0] for n in names(muon)}.isdisjoint({output.rsplit(".", 1)[0]})
    assert muon["use_muon"] and muon["lr"] == 0.02
    assert not adamw["use_muon"] and adamw["lr"] == 3e-4 and list(adamw["betas"]) == [0.9, 0.95]
    line = describe(parts.optimizer.param_groups)
    assert line.startswith("group 0 (lr=0.02 use_muon=True): 2 tensors")


def test_a_convolution_kernel_steps_as_torchs_muon_on_its_flattened_matrix(make_cfg):
    """Muon's update of a (out, in, k, k) kernel is torch.optim.Muon's on the (out, in x k
    x k) matrix: the reference implementation's flattening, checked against torch."""
    parts = build_parts(make_cfg("optimizer=muon", *CNN))
    kernel = parts.model.get_parameter("0.weight")
    assert kernel.ndim == 4
    start = kernel.detach().clone()
    reference = torch.nn.Parameter(start.flatten(1).clone())
    torch_muon = torch.optim.Muon([reference], lr=0.02, weight_decay=0.0, momentum=0.95)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        gradient = torch.randn(start.shape, generator=generator)
        for p in parts.model.parameters():
            p.grad = torch.zeros_like(p)
        kernel.grad = gradient.clone()
        reference.grad = gradient.flatten(1).clone()
        parts.optimizer.step()
        torch_muon.step()
    torch.testing.assert_close(kernel.detach().flatten(1), reference.detach())
    assert not torch.equal(kernel.detach(), start)


def test_muon_on_a_model_without_a_hidden_matrix_is_refused_naming_the_rule(optexp_cli, tmp_path):
    result = optexp_cli("optimizer=muon", "model=linear", "trainer.epochs=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.splitlines()[0]
    assert line.startswith("optexp: error: optimizer.groups[0].match=")
    assert "matches none of the parameters of model=linear" in line
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("groups", "key", "says"),
    [
        ("[{match:{name:'*.bias'}}]", "optimizer.groups", "without one"),
        ("[{match:{size:2}},{match:{}}]", "optimizer.groups[0].match.size", "not a condition"),
        ("[{match:{}},{match:{max_ndim:1}}]", "optimizer.groups[1].match", "matches none"),
    ],
)
def test_rules_that_leave_a_parameter_or_take_none_are_refused(make_cfg, groups, key, says):
    with pytest.raises(ConfigError) as refused:
        build_parts(make_cfg("optimizer=adamw", f"+optimizer.groups={groups}"))
    assert refused.value.key == key and says in str(refused.value)


def test_per_group_learning_rates_follow_one_schedule(make_cfg, tmp_path):
    """Biases at 10x the lr by a rule, under cosine: both groups anneal together (at the
    third of three epochs, to (1 + cos(2 pi / 3)) / 2 = 0.25 of their lr), and
    lr/group1 is the second group's (the rules' order: the biases first)."""
    groups = "[{match:{name:'*.bias'},lr:0.01,weight_decay:0.0},{match:{}}]"
    cfg = make_cfg(
        "optimizer=adamw", f"+optimizer.groups={groups}", "scheduler=cosine", "trainer.epochs=3",
        *QUICK,
    )  # fmt: skip
    summary = run(cfg, tmp_path)
    bias_lr, lr = summary["final"]["lr"], summary["final"]["lr/group1"]  # the rules' order
    assert lr / 1e-3 == pytest.approx(bias_lr / 0.01) == pytest.approx(0.25)


def test_muon_resumes_exactly_after_a_stop(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg("optimizer=muon", *CNN, "trainer.epochs=2")
    assert_resumes_exactly(cfg, tmp_path, monkeypatch, stop_at=10)


@pytest.mark.parametrize(
    ("extra", "exempt"),
    [((), True), (("optimizer.regularize_bias_and_norm=true",), False)],
)
def test_rule_groups_keep_weight_decay_off_biases_unless_asked(make_cfg, extra, exempt):
    """timm's rule holds inside rule groups: a group that inherits the optimizer's decay
    has its biases split off without it, unless regularize_bias_and_norm; a rule's own
    weight_decay is kept as it is."""
    groups = "[{match:{output:true},weight_decay:0.5},{match:{}}]"
    parts = build_parts(make_cfg("optimizer=adamw", f"+optimizer.groups={groups}", *extra))
    decays = {n: g["weight_decay"] for g in parts.optimizer.param_groups for n in g["names"]}
    assert decays["5.weight"] == decays["5.bias"] == 0.5  # the output layer's own rule
    assert decays["1.weight"] == 0.01
    assert decays["1.bias"] == (0.0 if exempt else 0.01)


def test_a_penalty_applies_to_the_parameters_its_match_picks(make_cfg):
    """The L2 penalty by the rules' conditions: the hidden layers' weights only (not the
    output layer's), where regularize_bias_and_norm would take every matrix."""
    match = "{layer:[Linear],output:false,min_ndim:2}"
    parts = build_parts(make_cfg("regularizer=l2", f"+regularizer.match={match}"))
    assert {id(p) for p in parts.penalty.params} == {
        id(parts.model.get_parameter(name)) for name in ("1.weight", "3.weight")
    }
    with pytest.raises(ConfigError) as refused:
        build_parts(make_cfg("regularizer=l2", "+regularizer.match={layer:[Conv2d]}"))
    assert refused.value.key == "regularizer.match"
