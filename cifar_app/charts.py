"""Altair chart builders for the app. Each returns a chart; tests read it back with `.to_dict()`.

The data behind every chart comes from cifar_app.tables and cifar_app.training; this module only
decides marks and encodings. Nothing here imports Streamlit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd

from cifar import SHORT_CLASSES
from cifar_app import tables, training

SPLIT_COLORS = {"train": "#1f77b4", "val": "#ff7f0e"}  # the report's blue / orange
MODEL_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")  # one per registered model, in registry order
BEST_COLOR = "#d62728"  # the report's red dashed best-epoch line
CELL_SELECTION = "cell"  # the confusion heatmap's point selection; the page reads event.selection[CELL_SELECTION]


def _best_rule(best_epoch: int) -> alt.Chart:
    df = pd.DataFrame({"epoch": [best_epoch], "label": [f"best epoch {best_epoch}"]})
    return alt.Chart(df).mark_rule(strokeDash=[6, 4], color=BEST_COLOR, size=2).encode(
        x="epoch:Q", tooltip=alt.Tooltip("label:N", title=""))


def training_curve(history: Sequence[Mapping[str, float]], best_epoch: int, metric: str = "loss",
                   title: str | None = None, height: int = 240) -> alt.LayerChart:
    """Train vs val `metric` ("loss" or "accuracy") per epoch, with a dashed rule at the best epoch."""
    if metric not in ("loss", "accuracy"):
        raise ValueError(f"metric must be 'loss' or 'accuracy', got {metric!r}")
    df = pd.DataFrame([r for r in training.history_long(history) if r["metric"] == metric],
                      columns=["epoch", "split", "metric", "value"])
    y_axis = alt.Axis(format=".0%") if metric == "accuracy" else alt.Axis()
    lines = alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("value:Q", title=metric, axis=y_axis, scale=alt.Scale(zero=False)),
        color=alt.Color("split:N", title=None, scale=alt.Scale(domain=list(SPLIT_COLORS), range=list(SPLIT_COLORS.values())),
                        legend=alt.Legend(orient="top")),
        tooltip=["epoch:Q", "split:N", alt.Tooltip("value:Q", format=".4f")],
    )
    layers = [lines]
    if best_epoch:
        layers.append(_best_rule(best_epoch))
    return alt.layer(*layers).properties(title=title or f"{metric}: train vs val", height=height)


def lr_schedule(history: Sequence[Mapping[str, float]], best_epoch: int = 0, title: str = "learning rate",
                height: int = 200) -> alt.LayerChart:
    """The lr each epoch started with (log scale when every lr is positive), best epoch dashed."""
    df = pd.DataFrame(training.lr_records(history), columns=["epoch", "lr"])
    log = bool(len(df)) and bool((df["lr"] > 0).all())
    line = alt.Chart(df).mark_line(point=True, color="#2ca02c", interpolate="step-after").encode(
        x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("lr:Q", title="lr", scale=alt.Scale(type="log") if log else alt.Scale(), axis=alt.Axis(format="~e")),
        tooltip=["epoch:Q", alt.Tooltip("lr:Q", format=".2e")],
    )
    layers = [line]
    if best_epoch:
        layers.append(_best_rule(best_epoch))
    return alt.layer(*layers).properties(title=title, height=height)


def confusion_heatmap(cm, names: Sequence[str] = SHORT_CLASSES, normalized: bool = False,
                      selectable: bool = True, size: int = 440) -> alt.LayerChart:
    """Rows = true, columns = predicted; colour and label = counts or row shares; cells clickable.

    A click selects the cell through the point selection named CELL_SELECTION on the fields
    true_idx / pred_idx (see tables.selected_cell).
    """
    df = pd.DataFrame(tables.confusion_records(cm, names))
    value = "rate" if normalized else "count"
    top = float(df[value].max()) if len(df) else 0.0
    # Text colour per cell: white on dark cells, grey for empty ones, so the non-zero cells stand out.
    dark = df[value] > 0.55 * top if top > 0 else False
    df["ink"] = "black"
    df.loc[df["count"] == 0, "ink"] = "#b0b0b0"
    df.loc[dark, "ink"] = "white"
    base = alt.Chart(df).encode(
        x=alt.X("pred:N", sort=list(names), title="predicted", axis=alt.Axis(labelAngle=-40, orient="top")),
        y=alt.Y("true:N", sort=list(names), title="true"),
    )
    tooltip = [alt.Tooltip("true:N", title="true"), alt.Tooltip("pred:N", title="predicted"),
               alt.Tooltip("count:Q", title="images"), alt.Tooltip("rate:Q", title="share of true class", format=".1%")]
    rect = base.mark_rect(stroke="white", strokeWidth=1).encode(
        color=alt.Color(f"{value}:Q", title="share of row" if normalized else "images",
                        scale=alt.Scale(scheme="blues"), legend=alt.Legend(format=".0%" if normalized else "d")),
        tooltip=tooltip,
    )
    if selectable:
        sel = alt.selection_point(name=CELL_SELECTION, fields=["true_idx", "pred_idx"], on="click", toggle=False)
        rect = rect.add_params(sel).encode(
            opacity=alt.condition(sel, alt.value(1.0), alt.value(0.55)),
        )
    # One text layer per ink colour (filtered), rather than a colour encoding: simplest for Vega-Lite.
    texts = [base.transform_filter(alt.datum.ink == ink).mark_text(fontSize=11, color=ink).encode(
                 text=alt.Text(f"{value}:Q", format=".0%" if normalized else "d"), tooltip=tooltip)
             for ink in ("black", "white", "#b0b0b0")]
    return alt.layer(rect, *texts).properties(width=size, height=size)


def zoomed_domain(values: Sequence[float], step: float = 0.05, margin: float = 0.02) -> list[float]:
    """[lo, 1] with lo a multiple of `step` just below the smallest value: differences of 1-3 points
    between classes or models stay visible, instead of flattening against a 0-100% axis."""
    finite = [float(v) for v in values if v is not None and pd.notna(v)]
    if not finite:
        return [0.0, 1.0]
    lo = max(0.0, (min(finite) - margin) // step * step)
    return [round(lo, 4), 1.0]


def prf_bars(classification: Mapping[str, Any], height: int = 260) -> alt.Chart:
    """Precision, recall and F1 per class, as dots on an axis zoomed to the values (see zoomed_domain)."""
    df = pd.DataFrame(tables.prf_long(classification))
    order = ["precision", "recall", "f1"]
    return alt.Chart(df).mark_point(filled=True, size=70, opacity=0.9).encode(
        x=alt.X("class:N", sort=list(SHORT_CLASSES), title=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("metric:N", sort=order),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(domain=zoomed_domain(df["value"])), axis=alt.Axis(format=".0%")),
        color=alt.Color("metric:N", sort=order, title=None, legend=alt.Legend(orient="top")),
        tooltip=["class:N", "metric:N", alt.Tooltip("value:Q", format=".3f")],
    ).properties(height=height)


def tune_heatmap(grid: Mapping[str, Any], height: int = 220) -> alt.LayerChart:
    """Best val accuracy per (lr, batch size) cell of the tuning grid; failed cells grey."""
    df = pd.DataFrame(grid["cells"], columns=["lr", "batch_size", "best_val_acc", "trials", "failed", "lr_label"])
    df["label"] = [("failed" if acc is None or pd.isna(acc) else f"{acc:.2%}") for acc in df["best_val_acc"]]
    lr_order = [f"{v:g}" for v in sorted(df["lr"].unique())]
    base = alt.Chart(df).encode(
        x=alt.X("batch_size:O", title="batch size"),
        y=alt.Y("lr_label:O", title="learning rate", sort=lr_order),
    )
    tooltip = [alt.Tooltip("lr_label:N", title="lr"), alt.Tooltip("batch_size:O", title="batch"),
               alt.Tooltip("best_val_acc:Q", title="best val acc", format=".2%"),
               alt.Tooltip("trials:Q"), alt.Tooltip("failed:Q")]
    rect = base.mark_rect(stroke="white").encode(
        color=alt.Color("best_val_acc:Q", title="val acc", scale=alt.Scale(scheme="greens"),
                        legend=alt.Legend(format=".0%")),
        tooltip=tooltip,
    )
    # Vega-Lite drops marks whose colour value is null, so failed cells get their own grey layer.
    failed = base.transform_filter("!isValid(datum.best_val_acc)").mark_rect(color="#dddddd", stroke="white").encode(
        tooltip=tooltip)
    text = base.mark_text(fontSize=13).encode(text="label:N", tooltip=tooltip)
    return alt.layer(rect, failed, text).properties(height=height)


def per_class_accuracy(rows: Sequence[Mapping[str, Any]], titles: Mapping[str, str], height: int = 260) -> alt.LayerChart:
    """Per-class test accuracy: dots for our models, black ticks for the report's published numbers,
    on an axis zoomed to the values.

    rows: tables.per_class_rows output; titles: model key → display name.
    """
    long = [{"class": r["class"], "model": titles[m], "source": src, "value": r.get(f"{m} · {src}")}
            for r in rows for m in titles for src in ("ours", "report")]
    df = pd.DataFrame([x for x in long if x["value"] is not None], columns=["class", "model", "source", "value"])
    models = list(titles.values())
    enc = dict(
        x=alt.X("class:N", sort=list(SHORT_CLASSES), title=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("model:N", sort=models, scale=alt.Scale(domain=models)),
        y=alt.Y("value:Q", title="test accuracy", axis=alt.Axis(format=".0%"),
                scale=alt.Scale(domain=zoomed_domain(df["value"]))),
        tooltip=["class:N", "model:N", "source:N", alt.Tooltip("value:Q", format=".2%")],
    )
    palette = alt.Scale(domain=models, range=list(MODEL_COLORS[: len(models)]))
    bars = alt.Chart(df).transform_filter(alt.datum.source == "ours").mark_point(filled=True, size=90).encode(
        color=alt.Color("model:N", sort=models, title=None, scale=palette, legend=alt.Legend(orient="top")), **enc)
    ticks = alt.Chart(df).transform_filter(alt.datum.source == "report").mark_tick(
        color="black", thickness=2, orient="horizontal").encode(**enc)
    return alt.layer(bars, ticks).properties(height=height)


def training_panel(history: Sequence[Mapping[str, float]], best_epoch: int, width: int = 360) -> alt.VConcatChart:
    """Loss, accuracy and lr of one run stacked in one chart (one Vega view instead of three: cheaper to draw)."""
    parts = [training_curve(history, best_epoch, "loss", height=190).properties(width=width),
             training_curve(history, best_epoch, "accuracy", height=190).properties(width=width),
             lr_schedule(history, best_epoch, height=150).properties(width=width)]
    return alt.vconcat(*parts, spacing=18).resolve_scale(color="shared")


POINT_SELECTION = "point"  # the embedding scatter's click selection; the page reads event.selection[POINT_SELECTION]


def embedding_scatter(records: Sequence[Mapping[str, Any]], names: Sequence[str] = SHORT_CLASSES,
                      height: int = 520, selected: int | None = None) -> alt.Chart | alt.LayerChart:
    """Test images at their 2-D projection, coloured by true class; errors as larger crosses; the
    `selected` image ringed. A click selects one image through the point selection POINT_SELECTION on
    the field `index`."""
    df = pd.DataFrame(list(records), columns=["index", "x", "y", "true", "predicted", "p", "result", "image"])
    sel = alt.selection_point(name=POINT_SELECTION, fields=["index"], on="click", toggle=False)
    points = alt.Chart(df).mark_point(filled=True).encode(
        x=alt.X("x:Q", title="principal component 1", axis=alt.Axis(grid=False)),
        y=alt.Y("y:Q", title="principal component 2", axis=alt.Axis(grid=False)),
        color=alt.Color("true:N", title="true class", sort=list(names), scale=alt.Scale(scheme="tableau10")),
        shape=alt.Shape("result:N", title=None, scale=alt.Scale(domain=["correct", "error"], range=["circle", "cross"])),
        size=alt.condition(alt.datum.result == "error", alt.value(55), alt.value(14)),
        opacity=alt.condition(sel, alt.value(0.9), alt.value(0.25)),
        tooltip=[alt.Tooltip("index:Q", title="test image"), "true:N", "predicted:N",
                 alt.Tooltip("p:Q", title="confidence", format=".2f")],
    ).add_params(sel)
    ring = df[df["index"] == selected]
    if selected is None or ring.empty:
        return points.properties(height=height)
    marker = alt.Chart(ring).mark_point(size=400, strokeWidth=3, color="black", filled=False).encode(
        x="x:Q", y="y:Q", tooltip=[alt.Tooltip("index:Q", title="picked test image")])
    return alt.layer(points, marker).properties(height=height)
