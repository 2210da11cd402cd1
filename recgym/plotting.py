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
