"""The report's plots: matplotlib figures (on the Agg canvas) rendered offline into inline SVG strings.

Every SVG is cleaned so the page stays self-contained and valid with several of them: no XML prolog or DTD
(its URL), no RDF metadata, no namespace URLs (the HTML parser puts <svg> in the SVG namespace itself), and
every id prefixed with the plot's name, since matplotlib names ids the same way in every figure.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

BLUE, ORANGE, GREY, GREEN = "#4269d0", "#efb118", "#9c9c9c", "#3ca951"
STYLE = {
    "svg.hashsalt": "tokenmill",  # the same report renders to the same bytes
    "svg.fonttype": "path",  # text drawn as paths: the plot looks the same with any fonts installed
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e5e5",
    "axes.axisbelow": True,
}


def _svg(fig: Figure, name: str, label: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="svg", metadata={"Date": None})  # constrained layout already fits it
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]  # the XML prolog and the DTD's URL
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    # no fixed size: the page's CSS sizes it, and the viewBox keeps its ratio
    svg = re.sub(r'\s(width|height)="[^"]*pt"', "", svg, count=2)
    svg = re.sub(r'(\bid="|href="#|url\(#)', rf"\1{name}-", svg)
    return svg.replace("<svg", f'<svg role="img" aria-label="{label}"', 1)


def _figure(height: float = 3.4) -> Figure:
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(8.5, height), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, per figure: no display needed, and no pyplot state the caller would share
    return fig


def languages(kept: dict[str, int], dropped: dict[str, int], stage: str, top: int = 15) -> str:
    """Horizontal stacked bars: documents per language, kept and dropped by `stage`."""
    totals = {k: kept.get(k, 0) + dropped.get(k, 0) for k in {*kept, *dropped}}
    names = sorted(totals, key=lambda k: (-totals[k], k))[:top][::-1]  # largest on top
    fig = _figure(max(1.6, 0.32 * len(names) + 0.9))
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        k = [kept.get(n, 0) for n in names]
        d = [dropped.get(n, 0) for n in names]
        ax.barh(names, k, color=BLUE, label=f"kept by {stage}")
        ax.barh(names, d, left=k, color=ORANGE, label=f"dropped by {stage}")
        ax.set_xlabel("documents")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="lower right", frameon=False)
    return _svg(fig, "languages", "documents per language")


def _log_bars(ax: Any, hist: dict[str, Any], color: str, label: str, share: bool, last: bool) -> None:
    edges, counts = hist["edges"], hist["counts"]
    if not counts:
        return
    total = hist["count"] or 1
    heights = [100 * c / total for c in counts] if share else counts
    # the last stage solid and under the others, earlier ones dashed on top: equal histograms stay visible
    style = {"linewidth": 2.4, "zorder": 2} if last else {"linewidth": 1.4, "linestyle": "--", "zorder": 3}
    ax.stairs(heights, edges, color=color, label=label, fill=not share, **style)


def length_histograms(series: Sequence[tuple[str, dict[str, Any]]], xlabel: str, name: str) -> str:
    """Log-x histograms of lengths; several series as outlines in % of each, one as filled counts."""
    colors = [GREY, ORANGE, GREEN, BLUE][-len(series) :] if len(series) <= 4 else [BLUE] * len(series)
    fig = _figure()
    share = len(series) > 1
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        for i, (label, hist) in enumerate(series):
            _log_bars(ax, hist, colors[i], label, share, last=i == len(series) - 1)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("% of documents" if share else "documents")
        if not share:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if share:
            ax.legend(frameon=False)
    return _svg(fig, name, xlabel)


def cluster_sizes(sizes: dict[str, int]) -> str:
    """Clusters per size (documents in the cluster), log-log when sizes spread wide."""
    xs = [int(s) for s in sizes]
    ys = list(sizes.values())
    fig = _figure(3.0)
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        if max(xs) > 30:
            ax.vlines(xs, 0.8, ys, color=BLUE, linewidth=1.2)
            ax.plot(xs, ys, "o", color=BLUE, markersize=3)
            ax.set_xscale("log")
        else:
            ax.bar(xs, ys, color=BLUE, width=0.7)
            ax.set_xticks(xs)
        if max(ys) > 50:
            ax.set_yscale("log")
        else:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # clusters come whole
        ax.set_xlabel("documents in the cluster")
        ax.set_ylabel("clusters")
    return _svg(fig, "clusters", "duplicate clusters per size")


def shard_tokens(per_shard: dict[str, list[list[Any]]]) -> str:
    """Tokens per shard, train then val, one bar each."""
    fig = _figure(3.0)
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        start = 0
        for split, color in (("train", BLUE), ("val", ORANGE)):
            rows = per_shard.get(split, [])
            xs = range(start, start + len(rows))
            ax.bar(xs, [r[2] for r in rows], color=color, width=0.8 if len(rows) < 100 else 1.0, label=split)
            start += len(rows)
        ax.set_xlabel("shard (train, then val)")
        ax.set_ylabel("tokens")
        ax.grid(axis="x", visible=False)
        ax.legend(frameon=False)
        ax.yaxis.set_major_formatter(EngFormatter(sep=""))  # 120k, 1.5M: no offset text to look for
        if start <= 20:
            ax.set_xticks(range(start))
    return _svg(fig, "shards", "tokens per shard")


def loss_curve(curve: dict[str, Any]) -> str:
    """Training loss per step, and validation loss where it was measured."""
    fig = _figure(3.2)
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        if curve["train"]:
            steps, loss = zip(*curve["train"], strict=True)
            ax.plot(steps, loss, color=BLUE, linewidth=1.4, label="train")
        if curve["val"]:
            steps, loss = zip(*curve["val"], strict=True)
            ax.plot(steps, loss, "o-", color=ORANGE, markersize=4, linewidth=1.4, label="val")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(frameon=False)
    return _svg(fig, "loss", "pretraining loss")
