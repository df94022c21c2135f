"""Figure helpers: tidy results DataFrame → matplotlib Figure (pure functions, no computation).

Conventions (ARCHITECTURE.md): medians over repetitions with 20–80% quantile bands, theory lines
dashed, labelled axes with units, one PNG per figure in ``paper_figs/``.
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["band_plot", "reference_line", "save_figure", "new_figure"]


def new_figure(ncols=1, width=5.0, height=3.8, nrows=1):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes.ravel()


def band_plot(ax, df, x, y, hue=None, label_fmt="{}", lo=0.2, hi=0.8, logx=True, logy=True,
              marker="o", colors=None):
    """Median of ``y`` per ``x`` (and per ``hue``) with a [lo, hi] quantile band.

    Returns a dict hue value -> color, so theory lines can reuse the colors.
    """
    groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=True))
    used = {}
    for k, (key, sub) in enumerate(groups):
        g = sub.groupby(x)[y]
        med = g.median()
        ql, qh = g.quantile(lo), g.quantile(hi)
        color = (colors or {}).get(key, f"C{k % 10}")
        label = None if key is None else label_fmt.format(key)
        ax.plot(med.index, med.values, marker=marker, ms=4, color=color, label=label)
        ax.fill_between(med.index, ql.values, qh.values, color=color, alpha=0.2, lw=0)
        used[key] = color
    if logx:
        ax.set_xscale("log", base=2 if _powers_of_two(df[x]) else 10)
    if logy:
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    return used


def _powers_of_two(values):
    v = np.asarray(values, dtype=float)
    v = v[v > 0]
    return len(v) > 0 and np.allclose(np.log2(v), np.round(np.log2(v)))


def reference_line(ax, xs, ys, label=None, color="k"):
    """A dashed theory / reference line."""
    ax.plot(xs, ys, ls="--", lw=1.2, color=color, label=label)


def save_figure(fig, path):
    """Save as PNG (atomically) and close."""
    from .._io import atomic_path

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)
    return path
