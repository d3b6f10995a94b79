"""The reference workload "digits-mlp" written by hand: plain PyTorch, no optexp, no Hydra.

It does the work `optexp experiment=digits_mlp_bench` does: scikit-learn's digits scaled
to [0, 1], an 80/20 split drawn with seed 0, an MLP 64-128-128-10 (ReLU) trained with
Adam (lr 1e-3; torch's fused kernel, which optexp picks too) on batches of 64 for 20
epochs, batches taken by indexing the tensors with a fresh random permutation each epoch.
After every epoch it evaluates the 20% split, prints a line, writes TensorBoard scalars
and a checkpoint; at the end, a metrics.json.

    python benchmarks/handwritten.py --run-dir /tmp/hand [--epochs 20] [--threads 1] [--digits-csv]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def load_data(
    device: torch.device, val_fraction: float = 0.2, seed: int = 0, from_csv: bool = False
) -> Tensors:
    """The digits from `load_digits()`, or (`from_csv`) from the CSV file it reads, read
    the way optexp reads it: without importing sklearn.datasets (~1.2 s of scipy)."""
    if from_csv:
        package = Path(importlib.util.find_spec("sklearn").origin).parent
        table = np.loadtxt(package / "datasets" / "data" / "digits.csv.gz", delimiter=",")
        pixels, target = table[:, :-1], table[:, -1]
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels, target = digits.data, digits.target
    x = torch.tensor(pixels, dtype=torch.float32) / 16.0
    y = torch.tensor(target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_val = round(len(y) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    return x[train].to(device), y[train].to(device), x[val].to(device), y[val].to(device)


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    out = model(x)
    model.train()
    return nn.functional.cross_entropy(out, y).item(), (out.argmax(1) == y).float().mean().item()


def train(
    run_dir: Path,
    epochs: int = 20,
    batch_size: int = 64,
    seed: int = 0,
    quiet: bool = False,
    digits_csv: bool = False,
) -> dict[str, Any]:
    """Train the reference workload into `run_dir`; return the last epoch's metrics."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # as optexp's auto
    x_train, y_train, x_val, y_val = load_data(device, from_csv=digits_csv)
    torch.manual_seed(seed)
    model = make_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(run_dir / "tb"))
    n = len(y_train)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        loss_sum, correct = 0.0, 0
        order = torch.randperm(n, device=device)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            x, y = x_train[index], y_train[index]
            out = model(x)
            loss = loss_fn(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
        val_loss, val_acc = evaluate(model, x_val, y_val)
        metrics = {
            "train/loss": loss_sum / n,
            "train/acc": correct / n,
            "val/loss": val_loss,
            "val/acc": val_acc,
            "time/epoch_s": time.perf_counter() - started,
        }
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, epoch)
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
            run_dir / "checkpoints" / "last.pt",
        )
        if not quiet:
            print(
                f"epoch {epoch}/{epochs}  " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            )
    writer.close()
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--digits-csv", action="store_true", help="read the digits as optexp does (see load_data)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train(args.run_dir, epochs=args.epochs, seed=args.seed, digits_csv=args.digits_csv)


if __name__ == "__main__":
    main()
