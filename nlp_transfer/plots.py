"""Figures without pyplot, for the reports (compare) and learning curves (curve): the Agg canvas, no GUI backend
and no global state to leak between calls; PNG bytes without a timestamp-like "Software" entry."""
from __future__ import annotations

import io


def figure(width: float, height: float):
    """A constrained-layout figure of ``width`` x ``height`` inches on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    made = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(made)
    return made


def png(made) -> bytes:
    """The figure as PNG bytes (written atomically by the caller)."""
    buffer = io.BytesIO()
    made.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()
