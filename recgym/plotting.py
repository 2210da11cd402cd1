"""Figures for files and TensorBoard, drawn without pyplot: the user's matplotlib backend is never touched."""

from __future__ import annotations

from typing import Any


def agg_figure(**kwargs: Any) -> Any:
    """A matplotlib ``Figure`` (``kwargs``: its arguments) drawn by an Agg canvas of its own: the object
    API, so plotting never touches pyplot's state or switches the user's backend (a notebook's stays)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def front_figure(panels: list[dict[str, Any]], utility: str = "true R_cum") -> Any:
    """Utility vs exposure equity (1 - Gini), one subplot per panel, side by side. A panel is a dict:
    ``title``; ``front``: (K, 2) the reference front's vertices as (1 - Gini, utility), drawn as a line;
    ``reference``: (2,) DPFR's reference point on it (a star); ``methods``: name -> (x, x_err, y, y_err),
    each method's mean point with its error bars (95% half-widths; NaN draws none)."""
    import numpy as np
    from matplotlib import colormaps

    colours, markers = colormaps["tab20"], "o^sDv<>P"  # a table can have 14 methods: 20 colours, 8 markers
    figure = agg_figure(figsize=(5.5 * len(panels), 4.5))
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    for ax, panel in zip(axes, panels):
        front = np.asarray(panel["front"])
        ax.plot(front[:, 0], front[:, 1], "k-", marker=".", label="reference front")
        ax.plot(*panel["reference"], "k*", markersize=11, label="DPFR reference (alpha 0.5)")
        for index, (name, (x, x_err, y, y_err)) in enumerate(panel["methods"].items()):
            ax.errorbar(x, y, xerr=np.nan_to_num(x_err), yerr=np.nan_to_num(y_err), fmt=markers[index % len(markers)],
                        color=colours(index % 20), capsize=3, label=name)
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xlabel("exposure equity (1 - Gini)")
        ax.set_ylabel(utility)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    return figure
