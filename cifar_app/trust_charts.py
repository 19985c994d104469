"""Altair charts of the calibration page: the reliability diagram and the confidence histogram.

The records come from cifar_app.trust.calibration_view; nothing here imports Streamlit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

SIDE_TITLES = {"before": "before (T = 1)", "after": "after temperature scaling"}
SIDE_COLORS = ["#9e9e9e", "#1f77b4"]  # before grey, after blue
OUTCOME_COLORS = ["#2ca02c", "#d62728"]  # right green, wrong red


def reliability_diagram(bins: Sequence[Mapping[str, Any]], height: int = 260) -> alt.LayerChart:
    """Accuracy per confidence bin (bars, before and after T side by side) against the diagonal, counts in the tooltip."""
    df = pd.DataFrame(list(bins))
    df["side"] = df["side"].map(SIDE_TITLES)
    df["mid"] = (df["lower"] + df["upper"]) / 2
    scale = alt.Scale(domain=list(SIDE_TITLES.values()), range=SIDE_COLORS)
    # bin="binned": the rows are bins already, drawn as vertical bars from lower to upper.
    x = alt.X("lower:Q", bin="binned", title="confidence (top probability), 15 equal-width bins",
              scale=alt.Scale(domain=[0, 1]))
    bars = alt.Chart(df).mark_bar(opacity=0.55, binSpacing=0).encode(
        x=x, x2="upper:Q",
        y=alt.Y("accuracy:Q", title="accuracy in the bin", scale=alt.Scale(domain=[0, 1]), stack=None),
        color=alt.Color("side:N", scale=scale, title=None, legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("side:N", title=""), alt.Tooltip("lower:Q", format=".3f", title="from"),
                 alt.Tooltip("upper:Q", format=".3f", title="to"),
                 alt.Tooltip("confidence:Q", format=".3f", title="mean confidence"),
                 alt.Tooltip("accuracy:Q", format=".3f"), alt.Tooltip("count:Q", format=",", title="images")])
    points = alt.Chart(df).mark_point(filled=True, size=40).encode(
        x="confidence:Q", y="accuracy:Q", color=alt.Color("side:N", scale=scale, legend=None),
        tooltip=[alt.Tooltip("side:N", title=""), alt.Tooltip("count:Q", format=",", title="images")])
    diagonal = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4], color="black").encode(
        x="x:Q", y="y:Q")
    return alt.layer(bars, diagonal, points).properties(height=height)


def bin_counts(bins: Sequence[Mapping[str, Any]], height: int = 110) -> alt.Chart:
    """Images per confidence bin, before and after T, on a log axis (most images sit in the top bin)."""
    df = pd.DataFrame(list(bins))
    df["side"] = df["side"].map(SIDE_TITLES)
    scale = alt.Scale(domain=list(SIDE_TITLES.values()), range=SIDE_COLORS)
    return alt.Chart(df).mark_bar(opacity=0.55, binSpacing=0).encode(
        x=alt.X("lower:Q", bin="binned", title=None, scale=alt.Scale(domain=[0, 1])), x2="upper:Q",
        y=alt.Y("count:Q", title="images (log)", scale=alt.Scale(type="symlog"), stack=None),
        color=alt.Color("side:N", scale=scale, legend=None),
        tooltip=[alt.Tooltip("side:N", title=""), alt.Tooltip("lower:Q", format=".3f", title="from"),
                 alt.Tooltip("upper:Q", format=".3f", title="to"), alt.Tooltip("count:Q", format=",", title="images")],
    ).properties(height=height)


def confidence_histogram(confidence: np.ndarray, correct: np.ndarray, bins: int = 20, height: int = 200) -> alt.Chart:
    """How many test images get each confidence, right and wrong predictions stacked (counted here, 20 bins)."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.searchsorted(edges[1:-1], np.asarray(confidence), side="left"), 0, bins - 1)
    rows = []
    for outcome, mask in (("right", np.asarray(correct)), ("wrong", ~np.asarray(correct))):
        counts = np.bincount(idx[mask], minlength=bins)
        rows += [{"outcome": outcome, "lower": float(edges[i]), "upper": float(edges[i + 1]), "count": int(counts[i])}
                 for i in range(bins)]
    df = pd.DataFrame(rows)
    return alt.Chart(df).mark_bar(binSpacing=0).encode(
        x=alt.X("lower:Q", bin="binned", title="confidence", scale=alt.Scale(domain=[0, 1])), x2="upper:Q",
        y=alt.Y("count:Q", title="test images", stack=True),
        color=alt.Color("outcome:N", scale=alt.Scale(domain=["right", "wrong"], range=OUTCOME_COLORS), title=None,
                        legend=alt.Legend(orient="top-left")),
        tooltip=[alt.Tooltip("outcome:N", title=""), alt.Tooltip("lower:Q", format=".2f", title="from"),
                 alt.Tooltip("upper:Q", format=".2f", title="to"), alt.Tooltip("count:Q", format=",", title="images")],
    ).properties(height=height)
