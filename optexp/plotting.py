"""matplotlib without pyplot: a Figure on the Agg canvas, whatever MPLBACKEND says, saved
with one error path. The report's figures (`optexp.report.figures`) are drawn this way,
and the confusion matrix's colours are matplotlib's; matplotlib is imported only when one
is drawn.
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


def confusion_image(counts: torch.Tensor, side: int = 480) -> np.ndarray:
    """The confusion matrix as a heat map about `side` pixels wide: rows the true class,
    columns the prediction, each cell shaded by its share of the row (matplotlib's Blues).
    An (H, W, 4) uint8 array. A colormap lookup, not a drawn figure: a sweep pays it at
    every run's end (benchmarks/RESULTS.md); the counts go beside it as a table."""
    import_matplotlib()
    from matplotlib import colormaps

    shares = counts.double() / counts.sum(1, keepdim=True).clamp_min(1)
    cell = max(1, side // counts.shape[0])
    pixels = colormaps["Blues"](shares.numpy(), bytes=True)
    return pixels.repeat(cell, axis=0).repeat(cell, axis=1)
