"""cifar_app.tables and cifar_app.reference: the view tables behind the pages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifar import CLASSES, SHORT_CLASSES
from cifar.metrics import confusion, summarize
from cifar_app import reference, tables


# ------------------------------------------------------------------------------ predictions

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PREDS_A = np.array([1, 1, 0, 1, 0, 2, 1, 2])
PROBS_A = np.array([[.2, .7, .1], [.1, .8, .1], [.6, .3, .1], [.1, .8, .1],
                    [.5, .4, .1], [.1, .1, .8], [.3, .4, .3], [.1, .2, .7]])
PREDS_B = np.array([0, 1, 0, 1, 1, 2, 2, 0])

def test_pair_indices_are_the_cell_sorted_by_confidence():
    assert tables.pair_indices(LABELS, PREDS_A, PROBS_A, 0, 1).tolist() == [1, 0]  # p(car) .8 then .7
    assert tables.pair_indices(LABELS, PREDS_A, PROBS_A, 0, 1, descending=False).tolist() == [0, 1]
    cm = confusion(LABELS, PREDS_A, 3)
    for t in range(3):
        for p in range(3):
            assert len(tables.pair_indices(LABELS, PREDS_A, PROBS_A, t, p)) == cm[t, p]

def test_pair_indices_drop_unavailable_images():
    available = np.ones(len(LABELS), dtype=bool)
    available[1] = False
    assert tables.pair_indices(LABELS, PREDS_A, PROBS_A, 0, 1, available=available).tolist() == [0]

def test_right_by_one_and_filter_by_other():
    mask = tables.right_by_one(LABELS, PREDS_B, PREDS_A)
    assert np.flatnonzero(mask).tolist() == [0, 4, 6]
    cell = tables.pair_indices(LABELS, PREDS_A, PROBS_A, 0, 1)  # [1, 0]
    assert tables.filter_by_other(cell, LABELS, PREDS_B, right=True).tolist() == [0]
    assert tables.filter_by_other(cell, LABELS, PREDS_B, right=False).tolist() == [1]

def test_disagreement_counts_partition_each_class():
    d = tables.disagreement_counts(LABELS, PREDS_A, PREDS_B, 3)
    total = d["only_a"] + d["only_b"] + d["both"] + d["neither"]
    assert total.tolist() == np.bincount(LABELS).tolist()
    assert d["only_b"].tolist() == [1, 1, 1]
    assert d["only_a"].tolist() == [0, 0, 1]

def test_top_k_and_caption():
    cls, p = tables.top_k(PROBS_A[:2], 2)
    assert cls.tolist() == [[1, 0], [1, 0]] and p[0].tolist() == [.7, .2]
    probs = np.zeros(10)
    probs[[3, 5, 4]] = [.61, .22, .09]
    assert tables.top_k_caption(probs) == "cat 61% · dog 22% · deer 9%"

def test_labels_agree():
    assert tables.labels_agree(LABELS, LABELS[[1, 5]], np.array([1, 5]))
    assert not tables.labels_agree(LABELS, np.array([2, 2]), np.array([1, 5]))
    assert not tables.labels_agree(LABELS, np.array([0]), np.array([100]))

def test_confusion_records_and_rates():
    cm = np.array([[3, 1], [0, 0]])
    recs = tables.confusion_records(cm, ["a", "b"])
    assert len(recs) == 4
    assert recs[1] == {"true": "a", "pred": "b", "true_idx": 0, "pred_idx": 1, "count": 1, "rate": 0.25, "correct": False}
    assert recs[2]["rate"] == 0.0  # an empty row stays 0, not NaN

def test_confused_pairs_rank_and_share():
    cm = np.diag([90] * 10)
    cm[3, 5], cm[5, 3], cm[0, 8] = 12, 7, 12
    pairs = tables.confused_pairs(cm, 3)
    assert [p["pair"] for p in pairs] == ["plane → ship", "cat → dog", "dog → cat"]
    assert pairs[0]["share_of_true"] == pytest.approx(12 / 102)
    assert [p["rank"] for p in pairs] == [1, 2, 3]


@pytest.mark.parametrize("points, cell", [
    ([{"true_idx": 3, "pred_idx": 5}], (3, 5)),
    ([{"true_idx": "3", "pred_idx": 5.0}], (3, 5)),
    ([], None), (None, None),
    ([{"true": "cat"}], None),
    ([{"true_idx": 12, "pred_idx": 0}], None),
])

def test_selected_cell(points, cell):
    assert tables.selected_cell(points) == cell


# ------------------------------------------------------------------------------ tables


def summary_of(seed: int = 0, n: int = 200) -> dict:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    logits = rng.normal(size=(n, 10))
    logits[np.arange(n), labels] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return json.loads(json.dumps(summarize(labels, probs, list(CLASSES))))  # as read back from the JSON

def test_prf_records_use_short_names():
    s = summary_of()
    recs = tables.prf_records(s["classification"])
    assert [r["class"] for r in recs] == list(SHORT_CLASSES)
    assert recs[1]["recall"] == pytest.approx(s["per_class_accuracy"]["automobile"])
    assert len(tables.prf_long(s["classification"])) == 30

def test_accuracy_and_per_class_rows_put_ours_beside_the_report():
    s = summary_of()
    meta = {"train_acc": 0.9, "val_acc": 0.8, "test_acc": 0.0}
    ours = {"cnn": {"meta": meta, "summary": s}, "resnet18": None}
    refs = {m: {"accuracy": reference.ACCURACY[m], "macro": reference.MACRO[m]} for m in ("cnn", "resnet18")}
    rows = {r["metric"]: r for r in tables.accuracy_rows(ours, refs)}
    assert rows["test accuracy"]["cnn · ours"] == pytest.approx(s["accuracy"])  # the evaluation wins over meta
    assert rows["train accuracy"]["cnn · ours"] == 0.9
    assert rows["macro F1"]["cnn · ours"] == pytest.approx(s["classification"]["macro"]["f1"])
    assert rows["test accuracy"]["resnet18 · ours"] is None
    assert rows["test accuracy"]["resnet18 · report"] == 0.9464
    per = tables.per_class_rows(ours, reference.PER_CLASS_ACCURACY)
    assert [r["class"] for r in per] == list(SHORT_CLASSES)
    assert per[3]["cnn · ours"] == pytest.approx(s["per_class_accuracy"]["cat"])
    assert per[3]["cnn · report"] == 0.732 and per[3]["resnet18 · report"] == 0.879
    # Flip TTA gets a row only once an evaluation measured it, and the report has no such number.
    tta = "test accuracy, flip TTA (2 passes)"
    assert tta not in rows
    ours["cnn"]["summary"] = {**s, "flip_tta_accuracy": 0.875}
    rows = {r["metric"]: r for r in tables.accuracy_rows(ours, refs)}
    assert rows[tta]["cnn · ours"] == 0.875 and rows[tta]["cnn · report"] is None
    assert rows[tta]["resnet18 · ours"] is None
    assert list(rows).index(tta) == list(rows).index("test accuracy") + 1

def test_model_rows():
    meta = {"parameters": 4577290, "recipe": "paper", "epochs_run": 30, "best_epoch": 27, "wall_time_s": 3725.0,
            "hardware": "AMD EPYC, 2 threads; fp32", "data": {"n_train": 45000, "n_val": 5000, "n_test": 10000},
            "config": {"optimizer": "adam", "lr": 0.001, "batch_size": 32, "scheduler": "plateau", "plateau_factor": 0.1,
                       "plateau_patience": 3, "dropout": 0.4, "epochs": 30, "early_stopping": 15}}
    rows = {r[""]: r for r in tables.model_rows({"cnn": {"meta": meta}, "resnet18": None}, {"cnn": 5}, reference.OVERVIEW)}
    assert rows["parameters"]["cnn · ours"] == "4,577,290"
    assert rows["depth"]["cnn · ours"].startswith("5 weight layers")
    assert rows["epochs"]["cnn · ours"] == "30 of 30, best epoch 27"
    assert rows["wall time"]["cnn · ours"] == "1 h 02 min"
    assert "Adam" in rows["recipe"]["cnn · ours"] and "ReduceLROnPlateau" in rows["recipe"]["cnn · ours"]
    assert rows["epochs"]["resnet18 · report"] == "75, best epoch 75"
    assert rows["wall time"]["cnn · report"] == "not stated"
    assert rows["parameters"]["resnet18 · ours"] == "—"

def test_weight_layers_counts_the_main_path():
    from cifar.models import build_model

    for name, depth in (("cnn", 5), ("resnet18", 18)):
        shapes = {k: tuple(v.shape) for k, v in build_model(name).state_dict().items()}
        assert tables.weight_layers(shapes) == depth

def test_attribution_target():
    probs = np.array([0.1, 0.7, 0.2])
    assert tables.attribution_target("predicted", probs, 2, None) == 1
    assert tables.attribution_target("true", probs, 2, None) == 2
    assert tables.attribution_target("true", probs, None, None) is None
    assert tables.attribution_target("class", probs, 2, 0) == 0

def test_confused_pairs_match_cifar_metrics():
    from cifar.metrics import most_confused_pairs

    cm = np.random.default_rng(1).integers(0, 5, (10, 10))
    ours = tables.confused_pairs(cm, 15)
    ref = most_confused_pairs(cm, 15)
    assert [(p["true_idx"], p["pred_idx"], p["count"]) for p in ours] == [(p["true"], p["pred"], p["count"]) for p in ref]

def test_reference_tables_cover_every_class():
    assert tuple(reference.CNN_PER_CLASS) == SHORT_CLASSES
    for per in reference.PER_CLASS_ACCURACY.values():
        assert tuple(per) == SHORT_CLASSES
    # The CNN's per-class accuracy is its recall column.
    assert all(reference.PER_CLASS_ACCURACY["cnn"][c] == reference.CNN_PER_CLASS[c][1] for c in SHORT_CLASSES)
