"""Matplotlib figures as PNG bytes for ``ipywidgets.Image`` (no extra frontend needed)."""

from __future__ import annotations

import io
from typing import Any


def figure_png(fig: Any, dpi: int = 80) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
