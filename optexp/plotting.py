"""matplotlib without pyplot: a Figure on the Agg canvas, whatever MPLBACKEND says, saved
with one error path. The report's figures (`optexp.report.figures`) and the confusion
matrix in TensorBoard are drawn this way; matplotlib is imported only when one is drawn.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optexp.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import torch


def import_matplotlib() -> None:
    """Import matplotlib with MPLBACKEND set aside: a value matplotlib does not know makes
    `import matplotlib` itself raise, and optexp never uses a backend, only a Figure with
    the Agg canvas (which pyplot's backend choice does not concern)."""
    if "matplotlib" in sys.modules:
        return
    saved = os.environ.pop("MPLBACKEND", None)
    try:
        import matplotlib  # noqa: F401
    finally:
        if saved is not None:
            os.environ["MPLBACKEND"] = saved


def new_figure(figsize: tuple[float, float], layout: str | None = "constrained") -> Any:
    """A matplotlib Figure drawn by the Agg canvas: no pyplot, so no global figure list and
    no GUI backend."""
    import_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def save(figure: Any, path: Path, dpi: int = 110) -> None:
    """Write `figure` to `path` (its suffix picks the format), or one line saying why not."""
    try:
        figure.savefig(path, dpi=dpi)
    except (OSError, ValueError) as error:  # a missing folder, an unknown image type
        raise UserError(f"cannot write {path}: {error}") from None


def confusion_image(counts: torch.Tensor) -> np.ndarray:
    """The confusion matrix drawn: rows the true class, columns the prediction, shaded by
    the share of the row, counts written in the cells when there are few classes. An
    (H, W, 4) uint8 array."""
    import numpy as np

    k = counts.shape[0]
    shares = counts.double() / counts.sum(1, keepdim=True).clamp_min(1)
    figure = new_figure(figsize=(6, 5.4), layout=None)
    figure.set_dpi(100)
    ax = figure.subplots()
    shown = ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(shown, ax=ax, label="share of the true class")
    ax.set(xlabel="predicted class", ylabel="true class", title="test set confusion matrix")
    if k <= 20:
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        for (row, col), n in np.ndenumerate(counts.numpy()):
            white = shares[row, col] > 0.5
            ax.text(col, row, n, ha="center", va="center", fontsize=7, color="w" if white else "k")
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba()).copy()
