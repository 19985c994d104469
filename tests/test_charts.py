"""cifar.charts: the Altair specs the pages draw, read back with to_dict()."""

from __future__ import annotations

import numpy as np
import pytest

from cifar import SHORT_CLASSES
from cifar_app import charts, tables, training

HISTORY = [dict(epoch=e, train_loss=2.0 / e, train_acc=0.3 * e, val_loss=2.1 / e, val_acc=0.28 * e, lr=0.1 / e,
                seconds=3.0) for e in (1, 2, 3)]


def layers(spec: dict) -> list[dict]:
    return spec["layer"]


def data_of(spec: dict, layer: dict) -> list[dict]:
    """The rows behind a layer (inline data or a top-level dataset)."""
    data = layer.get("data") or spec.get("data")
    if "values" in data:
        return data["values"]
    return spec["datasets"][data["name"]]


@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_training_curve_has_train_val_lines_and_a_dashed_best_epoch_rule(metric):
    spec = charts.training_curve(HISTORY, best_epoch=2, metric=metric).to_dict()
    lines, rule = layers(spec)
    assert lines["mark"]["type"] == "line"
    assert lines["encoding"]["color"]["field"] == "split"
    rows = data_of(spec, lines)
    assert {r["split"] for r in rows} == {"train", "val"} and len(rows) == 6
    assert {r["metric"] for r in rows} == {metric}
    assert rule["mark"]["type"] == "rule" and rule["mark"]["strokeDash"] == [6, 4]
    assert data_of(spec, rule)[0]["epoch"] == 2


def test_training_curve_without_best_epoch_has_no_rule():
    spec = charts.training_curve(HISTORY, best_epoch=0).to_dict()
    assert len(layers(spec)) == 1


def test_lr_schedule_is_log_scaled_when_positive():
    spec = charts.lr_schedule(HISTORY, best_epoch=3).to_dict()
    line, rule = layers(spec)
    assert line["encoding"]["y"]["scale"]["type"] == "log"
    assert [r["lr"] for r in data_of(spec, line)] == pytest.approx([0.1, 0.05, 0.1 / 3])
    zero = [dict(h, lr=0.0) for h in HISTORY]
    assert "type" not in charts.lr_schedule(zero).to_dict()["layer"][0]["encoding"]["y"].get("scale", {})


@pytest.mark.parametrize("normalized", [False, True])
def test_confusion_heatmap_counts_or_rates_with_a_cell_selection(normalized):
    cm = np.diag(np.full(10, 50))
    cm[3, 5] = 7
    spec = charts.confusion_heatmap(cm, SHORT_CLASSES, normalized=normalized).to_dict()
    rect, *texts = layers(spec)
    text = texts[0]
    field = "rate" if normalized else "count"
    assert rect["mark"]["type"] == "rect" and rect["encoding"]["color"]["field"] == field
    assert text["encoding"]["text"]["field"] == field
    assert rect["encoding"]["x"]["sort"] == list(SHORT_CLASSES)
    params = spec["params"]  # Altair lifts a layer's selection to the top, bound to the layer's view
    assert params[0]["name"] == charts.CELL_SELECTION and params[0]["views"] == [rect["name"]]
    assert params[0]["select"]["fields"] == ["true_idx", "pred_idx"]
    cell = next(r for r in data_of(spec, rect) if r["true_idx"] == 3 and r["pred_idx"] == 5)
    assert cell["count"] == 7 and cell["rate"] == pytest.approx(7 / 57)
    assert cell["ink"] == "black" and next(r for r in data_of(spec, rect) if r["count"] == 0)["ink"] != "black"
    assert [t["mark"]["color"] for t in texts] == ["black", "white", "#b0b0b0"]
    # What Streamlit hands back for a click on that cell maps to the pair:
    assert tables.selected_cell([{"true_idx": 3, "pred_idx": 5}]) == (3, 5)


def test_confusion_heatmap_without_selection():
    spec = charts.confusion_heatmap(np.eye(10, dtype=int), selectable=False).to_dict()
    assert "params" not in spec and "params" not in layers(spec)[0]


def test_prf_dots_group_three_metrics_per_class_on_a_zoomed_axis():
    from cifar import CLASSES
    from cifar.metrics import classification_table

    labels = np.arange(100) % 10
    preds = labels.copy()
    preds[:7] = (preds[:7] + 1) % 10  # precision and recall between 0.9 and 1
    table = classification_table(labels, preds, list(CLASSES))
    spec = charts.prf_bars(table).to_dict()
    assert spec["mark"]["type"] == "point"
    assert spec["encoding"]["xOffset"]["field"] == "metric"
    assert len(data_of(spec, spec)) == 30
    lo, hi = spec["encoding"]["y"]["scale"]["domain"]
    assert hi == 1.0 and 0.8 <= lo < min(v["value"] for v in data_of(spec, spec))


def test_zoomed_domain_starts_just_below_the_smallest_value():
    assert charts.zoomed_domain([0.91, 0.95, 0.99]) == [0.85, 1.0]
    assert charts.zoomed_domain([0.874, None, float("nan")]) == [0.85, 1.0]
    assert charts.zoomed_domain([0.01]) == [0.0, 1.0]
    assert charts.zoomed_domain([]) == [0.0, 1.0]


def test_tune_heatmap_marks_failed_cells():
    grid = training.tune_grid([{"lr": "0.001", "batch_size": "32", "best_val_acc": "0.87"},
                               {"lr": "0.003", "batch_size": "32", "best_val_acc": ""}])
    spec = charts.tune_heatmap(grid).to_dict()
    rect, failed, text = layers(spec)
    assert rect["encoding"]["x"]["field"] == "batch_size" and rect["encoding"]["y"]["field"] == "lr_label"
    assert failed["mark"]["color"] == "#dddddd" and "isValid" in failed["transform"][0]["filter"]
    labels = sorted(r["label"] for r in data_of(spec, text))
    assert labels == ["87.00%", "failed"]


def test_per_class_accuracy_dots_and_report_ticks():
    from cifar_app import reference

    ours = {"cnn": {"summary": {"per_class_accuracy": {c: 0.5 for c in SHORT_CLASSES}}}, "resnet18": None}
    rows = tables.per_class_rows(ours, reference.PER_CLASS_ACCURACY)
    spec = charts.per_class_accuracy(rows, {"cnn": "CustomCNN", "resnet18": "ResNet18"}).to_dict()
    bars, ticks = layers(spec)
    assert bars["mark"]["type"] == "point" and ticks["mark"]["type"] == "tick"
    lo, _ = bars["encoding"]["y"]["scale"]["domain"]
    assert 0.4 <= lo < 0.5  # zoomed to the values (ours 0.5, the report's 0.73-0.98), not 0-100%
    values = data_of(spec, bars)
    assert sum(1 for v in values if v["source"] == "ours") == 10  # ResNet18 unavailable: no bars
    assert sum(1 for v in values if v["source"] == "report") == 20


def test_training_panel_stacks_loss_accuracy_and_lr():
    spec = charts.training_panel(HISTORY, best_epoch=2).to_dict()
    loss, acc, lr = spec["vconcat"]
    assert [layer["mark"]["type"] for layer in loss["layer"]] == ["line", "rule"]
    assert acc["layer"][0]["encoding"]["y"]["axis"]["format"] == ".0%"
    assert lr["layer"][0]["encoding"]["y"]["field"] == "lr"
    assert all(part["width"] == 360 for part in spec["vconcat"])
