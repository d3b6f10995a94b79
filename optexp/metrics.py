"""The numbers a run produces, each computed in one place: what a batch adds to its
evaluation interval, the steps between two evaluations (`BatchStats`), an interval's record
(`IntervalRecord`: training metrics and per-layer statistics read from the device in one
transfer, then validation and timing), and the run's record for TensorBoard (`RunRecord`).
`optexp.tracking` writes them; `optexp.diagnostics` supplies the per-layer statistics.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from optexp import diagnostics, plotting
from optexp.config import flatten
from optexp.rundir import Status

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from optexp.data import Split
    from optexp.parts import Parts
    from optexp.stopping import EarlyStopping


class IntervalSums(NamedTuple):
    """What the batches between two evaluations add up to, read from the device once."""

    loss: float  # mean batch loss x batch size
    correct: float  # correct predictions (classification)
    penalty: float  # regularization penalty x batch size
    samples: float  # the batches' sizes


NO_SUMS = IntervalSums(0.0, 0.0, 0.0, 0.0)


class BatchStats(NamedTuple):
    """One batch's contribution to `IntervalSums`, left on the device: no sync per step, and
    fewer small ops than adding into running sums."""

    loss: torch.Tensor
    correct: torch.Tensor | None
    penalty: torch.Tensor | None
    size: int

    @classmethod
    def of(
        cls,
        out: torch.Tensor,
        y: torch.Tensor,
        loss: torch.Tensor,
        penalty: torch.Tensor | None,
        classification: bool,
    ) -> BatchStats:
        correct = (out.argmax(1) == y).sum() if classification else None
        return cls(loss.detach(), correct, None if penalty is None else penalty.detach(), len(y))

    @staticmethod
    def sums(stats: list[BatchStats], device: torch.device) -> torch.Tensor:
        """The `IntervalSums` of `stats` as one device tensor, in its field order."""
        if not stats:
            return torch.zeros(len(IntervalSums._fields), device=device)
        losses, corrects, penalties, sizes = zip(*stats, strict=True)
        n = torch.tensor(sizes, dtype=torch.float32, device=device)
        zero = n.new_zeros(())
        return torch.stack(
            [
                torch.stack(losses).float() @ n,
                zero if corrects[0] is None else torch.stack(corrects).sum().float(),
                zero if penalties[0] is None else torch.stack(penalties).float() @ n,
                n.sum(),
            ]
        )


@dataclass
class IntervalStart:
    """Where an evaluation interval's measurements start: the weights (for the update
    ratios; none without TensorBoard) and the clock."""

    before: list[torch.Tensor] | None
    started: float

    @classmethod
    def now(cls, parts: Parts) -> IntervalStart:
        before = diagnostics.weights_now(parts.model, parts.trainer.tensorboard)
        return cls(before, time.perf_counter())


class Position(NamedTuple):
    """Where an evaluation happened."""

    epoch: int  # the epoch in progress, or just completed (1 for the first)
    step: int  # optimizer steps taken
    x: int  # TensorBoard's step: the epoch, or the step with trainer.eval_every_steps
    epoch_end: bool  # at the end of the epoch (not between: eval_every_steps, a budget)
    epochs: float  # epochs trained: the epoch's share of its batches included


@dataclass
class IntervalRecord:
    """Everything an evaluation (an epoch's end, or every trainer.eval_every_steps steps)
    produced about the batches since the one before, for the tracker to write once."""

    position: Position
    metrics: dict[str, float]  # train/*, val/*, norms, lr: what early stopping reads
    timing: dict[str, float]  # time/epoch_s, throughput/samples_per_s
    layers: dict[str, float] = field(default_factory=dict)  # per-layer: TensorBoard only
    histograms: dict[str, torch.Tensor] = field(default_factory=dict)  # when due

    @property
    def scalars(self) -> dict[str, float]:
        at = {"progress/epoch": self.position.epochs, "progress/step": self.position.step}
        return self.metrics | self.timing | self.layers | at


def interval_record(
    parts: Parts,
    position: Position,
    start: IntervalStart,
    sums: torch.Tensor,
    grad_norms: torch.Tensor | None,
) -> IntervalRecord:
    """An evaluation's numbers from the `IntervalSums` of the batches since the last one (on
    the device) and each parameter's gradient norm at the last step: training metrics and
    per-layer statistics, validation unless the training loss diverged (of the averaged
    weights too, with trainer.ema or swa), the time since `start`, histograms if due."""
    metrics, layers, samples = _train_metrics(parts, sums, grad_norms, start.before)
    if not diverged(metrics["train/loss"], parts.trainer.divergence_threshold):
        metrics |= validation(parts)
    seconds = time.perf_counter() - start.started
    timing = {"time/epoch_s": seconds, "throughput/samples_per_s": samples / seconds}
    every = parts.trainer.histograms_every if parts.trainer.tensorboard else 0
    due = every and position.epoch_end and position.epoch % every == 0
    return IntervalRecord(position, metrics, timing, layers, histograms(parts.model) if due else {})


def validation(parts: Parts) -> dict[str, float]:
    """val/* of the weights evaluated, and of the other ones when weights are averaged."""
    evaluated = parts.weights.evaluated_model()
    metrics = {f"val/{k}": v for k, v in evaluate(parts, parts.data.val, evaluated).items()}
    if (other := parts.weights.other_model()) is not None:
        prefix, model = other
        metrics |= {f"{prefix}/{k}": v for k, v in evaluate(parts, parts.data.val, model).items()}
    return metrics


def _train_metrics(
    parts: Parts,
    sums: torch.Tensor,
    grad_norms: torch.Tensor | None,
    before: list[torch.Tensor] | None,
) -> tuple[dict[str, float], dict[str, float], float]:
    """Training metrics from the `IntervalSums` and the norms (NaN where no gradient norm was
    measured), the per-layer statistics (none without the weights `before`) and the
    samples they cover, read from the device in one transfer."""
    if grad_norms is None:
        count = sum(1 for _ in parts.model.parameters())
        grad_norms = torch.full((count,), math.nan, device=parts.device)
    layers = diagnostics.layer_norms(parts.model, grad_norms, before)
    norms = torch.linalg.vector_norm(layers[:2], dim=1)  # global gradient and weight norms
    sums = parts.world.sum(sums)  # every rank's batches (the norms are the same on each)
    values = torch.cat([sums, norms, layers.flatten()]).tolist()
    totals, (grad, weight), per_layer = IntervalSums(*values[:4]), values[4:6], values[6:]
    loss, correct, penalty = (t / totals.samples for t in totals[:3])
    metrics = {"train/loss": loss, "train/penalty": penalty}
    if parts.data.is_classification:
        metrics["train/acc"] = correct
    metrics |= {"grad_norm": grad, "weight_norm": weight} | learning_rates(parts.optimizer)
    names = [name for name, _ in parts.model.named_parameters()]
    return metrics, diagnostics.layer_scalars(names, per_layer), totals.samples


@torch.no_grad()
def evaluate(parts: Parts, split: Split | None, model: nn.Module | None = None) -> dict[str, float]:
    """Mean loss (and accuracy for classification) over `split`, in eval mode, of `model`
    (the model trained unless given)."""
    if split is None:
        return {}
    model = parts.model if model is None else model
    classification = parts.data.is_classification
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, device=parts.device)
    for x, y in split.batches(parts.trainer.eval_batch_size):
        x, y = parts.world.shard(x, y)  # each rank its part, the sums all-reduced below
        with parts.autocast():
            out = model(x)
        loss = parts.loss_fn(out.float(), y)
        correct = (out.argmax(1) == y).sum() if classification else loss.new_zeros(())
        if len(y):
            sums += torch.stack([loss * len(y), correct.float()])
    model.train(was_training)
    loss_sum, correct_sum = parts.world.sum(sums).tolist()
    result = {"loss": loss_sum / len(split)}
    if classification:
        result["acc"] = correct_sum / len(split)
    return result


# What an optimizer's parameter group says its step really is, by the tag it is logged
# under: Schedule-Free's lr after its warm-up, Prodigy's estimate of the step size.
STEP_SIZES = {"scheduled_lr": "lr/scheduled", "d": "lr/d"}


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """`lr` of the first parameter group, and `lr/groupK` for the others if any; what the
    first group says of its real step (`STEP_SIZES`)."""
    groups = optimizer.param_groups
    rates = {"lr": groups[0]["lr"]}
    rates |= {f"lr/group{k}": g["lr"] for k, g in enumerate(groups) if k > 0}
    rates |= {tag: float(groups[0][key]) for key, tag in STEP_SIZES.items() if key in groups[0]}
    return rates


def histograms(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights and gradients (at the epoch's last step) by TensorBoard tag."""
    tensors = {}
    for name, param in model.named_parameters():
        tensors[f"weights/{name}"] = param.detach()
        if param.grad is not None:
            tensors[f"gradients/{name}"] = param.grad
    return tensors


def diverged(loss: float, threshold: float | None) -> bool:
    return not math.isfinite(loss) or (threshold is not None and loss > threshold)


def objective(status: Status, stopper: EarlyStopping) -> float:
    """What a sweeper optimizes: the best monitored value; the worst one if diverged."""
    if status == Status.DIVERGED or math.isnan(stopper.best):
        return stopper.worst
    return stopper.best


@dataclass
class RunRecord:
    """What TensorBoard keeps of a finished run, at its last step."""

    hparams: dict[str, Any]  # the chosen options and the knobs of each part
    metrics: dict[str, float]  # best validation and test metrics
    images: dict[str, np.ndarray] = field(default_factory=dict)  # (H, W, C) by tag
    texts: dict[str, str] = field(default_factory=dict)  # markdown by tag


def run_record(
    parts: Parts, config: dict[str, Any], choices: dict[str, str], test: dict[str, float] | None
) -> RunRecord:
    best = {
        "best_" + k.replace("/", "_"): v
        for k, v in parts.early_stopping.best_metrics.items()
        if k.startswith("val/")
    }
    results = best | {f"test_{k}": v for k, v in (test or {}).items()}
    images, texts = {}, {}
    if (counts := test_confusion(parts)) is not None:
        images["images/test_confusion_matrix"] = plotting.confusion_image(counts)
        texts["run/test_confusion_matrix"] = confusion_table(counts)
    return RunRecord(hparams(config, choices), results, images, texts)


def confusion_table(counts: torch.Tensor) -> str:
    """The confusion counts as a markdown table: a row per true class, a column per
    predicted one."""
    k = counts.shape[0]
    rows = [
        "| true \\ predicted | " + " | ".join(map(str, range(k))) + " |",
        "|---" * (k + 1) + "|",
        *(
            f"| **{i}** | " + " | ".join(map(str, row)) + " |"
            for i, row in enumerate(counts.tolist())
        ),
    ]
    return "\n".join(rows)


def test_confusion(parts: Parts) -> torch.Tensor | None:
    """The test split's confusion matrix (classification), with the weights just tested."""
    data, batch_size = parts.data, parts.trainer.eval_batch_size
    if data.test is None or data.num_classes is None:
        return None
    with parts.autocast():
        return diagnostics.confusion_matrix(parts.model, data.test, data.num_classes, batch_size)


HPARAM_KEYS = (
    "seed",
    "data_seed",
    "optimizer.",
    "scheduler.",
    "regularizer.",
    "model.",
    "loss.",
    "augmentation.",
    "dataset.",
    "trainer.batch_size",
    "trainer.epochs",
    "trainer.precision",
)


def hparams(config: dict[str, Any], choices: dict[str, str]) -> dict[str, Any]:
    """Group choices plus the scalar knobs of each part, for TensorBoard's HParams tab."""
    chosen = {k: v for k, v in flatten(config).items() if k.startswith(HPARAM_KEYS)}
    chosen = {
        k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in chosen.items()
    }
    return dict(choices) | chosen
