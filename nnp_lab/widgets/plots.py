"""Plot pieces shared by the widgets and the dashboards (matplotlib; views only)."""

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


def learning_curve(ax: Any, log: Any) -> None:
    """Validation/test force RMSE vs labels of an active-learning record (al_log.nc)."""
    import numpy as np

    for key, name in (("val_force_rmse", "validation"), ("test_force_rmse", "test")):
        if key in log and np.isfinite(log[key].values).any():
            ax.plot(log["n_labels"], log[key], "o-", label=name)
    ax.set_xlabel("labels")
    ax.set_ylabel("force RMSE (meV/Å)")
    ax.legend(fontsize=7)
