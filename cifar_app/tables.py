"""View tables: the test-set predictions, confusion and metrics of each model, and the Overview's
comparison rows, as arrays and plain records (lists of flat dicts, one per table row or chart mark).

Nothing here imports torch, Altair or Streamlit, so every number a page shows is computed (and
unit-tested) here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cifar import CLASSES, SHORT_CLASSES
from cifar_app.formats import duration, percent
from cifar_app.training import recipe_text

# ------------------------------------------------------------------------------ predictions


def pair_indices(labels: np.ndarray, preds: np.ndarray, probs: np.ndarray, true: int, pred: int, *,
                 available: np.ndarray | None = None, descending: bool = True) -> np.ndarray:
    """Test indices whose label is `true` and prediction `pred`, most confident first.

    Confidence is the probability of the predicted class. `available` (bool over all test indices)
    drops images the app cannot show (not in the demo bundle). Ties keep index order.
    """
    labels, preds = np.asarray(labels), np.asarray(preds)
    idx = np.flatnonzero((labels == true) & (preds == pred))
    if available is not None:
        idx = idx[np.asarray(available, dtype=bool)[idx]]
    conf = np.asarray(probs)[idx, pred]
    order = np.argsort(-conf if descending else conf, kind="stable")
    return idx[order]


def right_by_one(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray) -> np.ndarray:
    """Boolean mask: model A is right and model B is wrong."""
    labels = np.asarray(labels)
    return (np.asarray(preds_a) == labels) & (np.asarray(preds_b) != labels)


def filter_by_other(indices: np.ndarray, labels: np.ndarray, preds_other: np.ndarray, right: bool) -> np.ndarray:
    """The indices (order kept) that the other model classifies rightly (right=True) or wrongly."""
    indices = np.asarray(indices, dtype=np.int64)
    ok = np.asarray(preds_other)[indices] == np.asarray(labels)[indices]
    return indices[ok if right else ~ok]


def disagreement_counts(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, n_classes: int = 10) -> dict[str, np.ndarray]:
    """Per true class: how many images only A gets right, only B gets right, both, neither."""
    labels = np.asarray(labels)
    a = np.asarray(preds_a) == labels
    b = np.asarray(preds_b) == labels

    def per_class(mask: np.ndarray) -> np.ndarray:
        return np.bincount(labels[mask], minlength=n_classes)

    return {"only_a": per_class(a & ~b), "only_b": per_class(~a & b), "both": per_class(a & b), "neither": per_class(~a & ~b)}


def top_k(probs: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(classes, probabilities), each (N, k), highest first, for (N, C) or one (C,) row of probabilities."""
    p = np.atleast_2d(np.asarray(probs))
    k = min(int(k), p.shape[1])
    cls = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return cls, np.take_along_axis(p, cls, axis=1)


def top_k_caption(probs_row: np.ndarray, names: Sequence[str] = SHORT_CLASSES, k: int = 3) -> str:
    """"cat 61% · dog 22% · deer 9%" for one image's probabilities."""
    cls, p = top_k(probs_row, k)
    return " · ".join(f"{names[c]} {q:.0%}" for c, q in zip(cls[0], p[0]))


def labels_agree(eval_labels: np.ndarray, image_labels: np.ndarray, image_indices: np.ndarray) -> bool:
    """True when the evaluation's labels match the images' labels at the images' test indices."""
    eval_labels = np.asarray(eval_labels)
    image_indices = np.asarray(image_indices)
    if image_indices.size and image_indices.max() >= len(eval_labels):
        return False
    return bool(np.array_equal(eval_labels[image_indices], np.asarray(image_labels)))


# ------------------------------------------------------------------------------ confusion


def confusion_records(cm: np.ndarray, names: Sequence[str] = SHORT_CLASSES) -> list[dict[str, Any]]:
    """One record per cell: true/pred names and indices, count, and the row share ("rate")."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1)
    out = []
    for t in range(cm.shape[0]):
        for p in range(cm.shape[1]):
            rate = float(cm[t, p] / rows[t]) if rows[t] else 0.0
            out.append({"true": names[t], "pred": names[p], "true_idx": t, "pred_idx": p,
                        "count": int(cm[t, p]), "rate": rate, "correct": t == p})
    return out


def confused_pairs(cm: np.ndarray, k: int = 10, names: Sequence[str] = SHORT_CLASSES) -> list[dict[str, Any]]:
    """The k most confused (true → predicted) pairs, with each pair's share of its true class."""
    # The same ranking as cifar.metrics.most_confused_pairs, without importing sklearn into the app.
    cm = np.asarray(cm)
    rows = cm.sum(axis=1)
    cells = sorted(((int(cm[t, p]), t, p) for t in range(cm.shape[0]) for p in range(cm.shape[1])
                    if t != p and cm[t, p] > 0), key=lambda c: (-c[0], c[1], c[2]))
    return [{"rank": rank, "pair": f"{names[t]} → {names[p]}", "true_idx": t, "pred_idx": p, "count": n,
             "share_of_true": float(n / rows[t]) if rows[t] else 0.0}
            for rank, (n, t, p) in enumerate(cells[:k], 1)]


def selected_cell(points: Sequence[Mapping[str, Any]] | None, n_classes: int = 10) -> tuple[int, int] | None:
    """The (true, pred) cell of an Altair point selection on the confusion heatmap, or None."""
    for point in points or ():
        try:
            t, p = int(point["true_idx"]), int(point["pred_idx"])
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= t < n_classes and 0 <= p < n_classes:
            return t, p
    return None


# ------------------------------------------------------------------------------ metrics tables


def short_name(name: str) -> str:
    """The report's short class name for a full CIFAR-10 name ("automobile" → "car")."""
    return SHORT_CLASSES[CLASSES.index(name)] if name in CLASSES else name


def prf_records(classification: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-class precision/recall/F1/support rows from metrics.classification_table's output."""
    return [{"class": short_name(name), "precision": v["precision"], "recall": v["recall"], "f1": v["f1"],
             "support": v["support"]} for name, v in classification["per_class"].items()]


def prf_long(classification: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The same as prf_records, one row per (class, metric), for a grouped bar chart."""
    return [{"class": r["class"], "metric": m, "value": r[m]} for r in prf_records(classification)
            for m in ("precision", "recall", "f1")]



# ------------------------------------------------------------------------------ model overview


def weight_layers(shapes: Mapping[str, Sequence[int]]) -> int:
    """Depth as papers count it: conv and linear layers on the main path (ResNet18 → 18, CustomCNN → 5).

    Counts 4D (conv) and 2D (linear) `.weight` tensors, leaving out ResNet's 1×1 shortcut convs.
    """
    return sum(1 for k, s in shapes.items()
               if k.endswith(".weight") and len(s) in (2, 4) and ".downsample." not in f".{k}")


def _pct(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def accuracy_rows(ours: Mapping[str, Mapping[str, Any] | None], reference: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows train/val/test accuracy and macro P/R/F1; columns "<model> · ours" and "<model> · report".

    ours[model] holds "meta" (checkpoint metadata) and "summary" (metrics.summarize) or is None when
    that model is unavailable. reference[model] holds "accuracy" and "macro" dicts (cifar.reference).
    """
    rows = []
    specs = [("train accuracy", "accuracy", "train"), ("validation accuracy", "accuracy", "val"),
             ("test accuracy", "accuracy", "test"), ("test accuracy, flip TTA (2 passes)", "accuracy", "tta"),
             ("macro precision", "macro", "precision"), ("macro recall", "macro", "recall"), ("macro F1", "macro", "f1")]
    # The TTA row only when some evaluation measured it (`cifar.evaluate --flip-tta`): never a guess.
    if not any((got or {}).get("summary") and "flip_tta_accuracy" in got["summary"] for got in ours.values()):
        specs = [s for s in specs if s[2] != "tta"]
    for label, group, key in specs:
        row: dict[str, Any] = {"metric": label}
        for model, got in ours.items():
            value = None
            if got is not None:
                meta, summary = got.get("meta") or {}, got.get("summary") or {}
                if group == "accuracy":
                    value = {"train": meta.get("train_acc"), "val": meta.get("val_acc"),
                             "test": summary.get("accuracy", meta.get("test_acc")),
                             "tta": summary.get("flip_tta_accuracy")}[key]
                else:
                    value = (summary.get("classification") or {}).get("macro", {}).get(key)
            row[f"{model} · ours"] = _pct(value)
            row[f"{model} · report"] = _pct(reference.get(model, {}).get(group, {}).get(key))
        rows.append(row)
    return rows


def per_class_rows(ours: Mapping[str, Mapping[str, Any] | None], reference: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """One row per class: test accuracy per model, ours and the report's."""
    rows = []
    for i, short in enumerate(SHORT_CLASSES):
        row: dict[str, Any] = {"class": short}
        for model, got in ours.items():
            value = None
            if got is not None:
                per = (got.get("summary") or {}).get("per_class_accuracy") or {}
                value = per.get(CLASSES[i], per.get(short))
            row[f"{model} · ours"] = _pct(value)
            row[f"{model} · report"] = _pct(reference.get(model, {}).get(short))
        rows.append(row)
    return rows


def model_rows(ours: Mapping[str, Mapping[str, Any] | None], depths: Mapping[str, int | None],
               reference: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows parameters / depth / recipe / data / epochs / wall time / hardware, as display strings.

    ours[model] holds "meta" or is None; reference[model] holds "depth", "recipe", "epochs",
    "best_epoch" and "data" as the report states them (None = not stated).
    """
    def ref(model: str, key: str) -> str:
        v = reference.get(model, {}).get(key)
        return "not stated" if v is None else str(v)

    rows = []
    labels = ("parameters", "depth", "recipe", "data", "epochs", "wall time", "hardware")
    for label in labels:
        row: dict[str, Any] = {"": label}
        for model, got in ours.items():
            meta = (got or {}).get("meta") or {}
            cfg = meta.get("config") or {}
            data = meta.get("data") or {}
            if not meta:
                mine = "—"
            elif label == "parameters":
                mine = f"{meta['parameters']:,}" if "parameters" in meta else "—"
            elif label == "depth":
                d = depths.get(model)
                mine = f"{d} weight layers (conv + linear)" if d else "—"
            elif label == "recipe":
                mine = f"{meta.get('recipe', '?')} recipe: {recipe_text(cfg)}"
            elif label == "data":
                mine = f"{data.get('n_train', 0):,} train / {data.get('n_val', 0):,} val / {data.get('n_test', 0):,} test images"
            elif label == "epochs":
                mine = f"{meta.get('epochs_run', '?')} of {cfg.get('epochs', '?')}, best epoch {meta.get('best_epoch', '?')}"
            elif label == "wall time":
                mine = duration(meta.get("wall_time_s"))
            else:
                mine = meta.get("hardware") or "—"
            row[f"{model} · ours"] = mine
            if label == "epochs":
                best = reference.get(model, {}).get("best_epoch")
                row[f"{model} · report"] = ref(model, "epochs") + (f", best epoch {best}" if best else "")
            else:
                row[f"{model} · report"] = ref(model, label)
        rows.append(row)
    return rows



def display_rows(rows: Sequence[Mapping[str, Any]], digits: int = 2) -> list[dict[str, Any]]:
    """The same rows with every number as a percentage string ("87.44%") and every gap as "—":
    one precision for all accuracies, and no "None" cells."""
    return [{k: percent(v, digits) if (v is None or isinstance(v, float)) and k not in ("metric", "class") else v
             for k, v in r.items()} for r in rows]


def versus_report(meta: Mapping[str, Any], data_name: str, report_recipe: str) -> str:
    """What an "ours vs report" figure compares: our recipe and data against the report's."""
    cfg = meta.get("config") or {}
    ours = f"{meta.get('recipe', '?')} recipe ({recipe_text(cfg)})"
    return f"Ours: {ours}, on {data_name}. Report: {report_recipe}, on the original CIFAR-10."


# ------------------------------------------------------------------------------ attribution targets


def attribution_target(mode: str, probs: np.ndarray, label: int | None, chosen: int | None) -> int | None:
    """The class to explain: "predicted" → argmax, "true" → the label (None if unknown), "class" → chosen."""
    if mode == "predicted":
        return int(np.argmax(probs))
    if mode == "true":
        return None if label is None else int(label)
    if mode == "class":
        return None if chosen is None else int(chosen)
    raise ValueError(f"target mode must be 'predicted', 'true' or 'class', got {mode!r}")
