"""Pure functions behind the app's views: arrays and metadata in, arrays and plain records out.

Nothing here imports torch, Altair or Streamlit, so every number a page shows is computed (and
unit-tested) here. "Records" are lists of flat dicts, one per table row or chart mark.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cifar import CLASSES, SHORT_CLASSES

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


# ------------------------------------------------------------------------------ training history


def history_long(history: Sequence[Mapping[str, float]]) -> list[dict[str, Any]]:
    """Per epoch: train/val × loss/accuracy as long records (epoch, split, metric, value)."""
    out = []
    for h in history:
        for split in ("train", "val"):
            for metric, key in (("loss", f"{split}_loss"), ("accuracy", f"{split}_acc")):
                if key in h and h[key] is not None and math.isfinite(h[key]):
                    out.append({"epoch": int(h["epoch"]), "split": split, "metric": metric, "value": float(h[key])})
    return out


def lr_records(history: Sequence[Mapping[str, float]]) -> list[dict[str, Any]]:
    """The learning rate each epoch started with."""
    return [{"epoch": int(h["epoch"]), "lr": float(h["lr"])} for h in history if "lr" in h]


def history_summary(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Best epoch and its numbers, and the generalisation gap at the best epoch (train acc - val acc)."""
    history = meta.get("history") or []
    best = int(meta.get("best_epoch") or 0)
    row = history[best - 1] if 0 < best <= len(history) else {}
    return {"best_epoch": best, "epochs_run": int(meta.get("epochs_run") or len(history)),
            "best_val_acc": row.get("val_acc"), "best_train_acc": row.get("train_acc"),
            "gap": (row["train_acc"] - row["val_acc"]) if row else None}


# ------------------------------------------------------------------------------ tuning grid

TUNE_REQUIRED = ("lr", "batch_size", "best_val_acc")


def tune_grid(rows: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """Cells of the lr × batch_size heatmap from cifar.tune's CSV rows (strings).

    Trials that differ in other fields share a cell: the cell keeps the best val accuracy and
    counts its trials. A failed trial (empty best_val_acc) counts in its cell's `failed`.
    Raises ValueError when a column the heatmap needs is missing.
    """
    rows = list(rows)
    if rows:
        missing = [c for c in TUNE_REQUIRED if c not in rows[0]]
        if missing:
            raise ValueError(f"the tuning CSV lacks the column(s) {', '.join(missing)}")
    cells: dict[tuple[float, int], dict[str, Any]] = {}
    for r in rows:
        try:
            key = (float(r["lr"]), int(float(r["batch_size"])))
        except (TypeError, ValueError):
            continue
        cell = cells.setdefault(key, {"lr": key[0], "batch_size": key[1], "best_val_acc": None, "trials": 0, "failed": 0})
        cell["trials"] += 1
        acc = (r.get("best_val_acc") or "").strip()
        if not acc:
            cell["failed"] += 1
            continue
        acc = float(acc)
        if cell["best_val_acc"] is None or acc > cell["best_val_acc"]:
            cell["best_val_acc"] = acc
    records = sorted(cells.values(), key=lambda c: (c["lr"], c["batch_size"]))
    for c in records:
        c["lr_label"] = f"{c['lr']:g}"
    scored = [c for c in records if c["best_val_acc"] is not None]
    best = max(scored, key=lambda c: c["best_val_acc"], default=None)
    # A grid is usually capped at a few epochs; the page must say so, or its cells read as final accuracies.
    # The cap is the config's epoch count (a trial may stop early), else the epochs it ran.
    epochs = {_trial_epochs(r) for r in rows} - {None}
    return {"cells": records, "best": best, "n_trials": len(rows), "n_failed": sum(c["failed"] for c in records),
            "epochs": sorted(epochs)}


def tune_epochs_note(epochs: Sequence[int], report_epochs: int) -> str:
    """The end of the grid's caption: how long trials trained and, when that is short of the report's
    run, that the cells rank settings rather than predict final accuracy."""
    if not epochs:
        return "."
    text = f" within {' or '.join(map(str, epochs))} epochs per trial"
    if max(epochs) < report_epochs:
        text += (f", a cap well short of the report's {report_epochs}: compare the cells with each other, "
                 "not with the report's fully trained number")
    return text + "."


def _trial_epochs(row: Mapping[str, str]) -> int | None:
    try:
        value = json.loads(row.get("config") or "{}").get("epochs")
    except (ValueError, AttributeError):
        value = None
    try:
        value = float(value if value is not None else row.get("epochs_run", ""))
    except (TypeError, ValueError):
        return None
    return int(value) if math.isfinite(value) and value > 0 else None


# ------------------------------------------------------------------------------ model overview


def weight_layers(shapes: Mapping[str, Sequence[int]]) -> int:
    """Depth as papers count it: conv and linear layers on the main path (ResNet18 → 18, CustomCNN → 5).

    Counts 4D (conv) and 2D (linear) `.weight` tensors, leaving out ResNet's 1×1 shortcut convs.
    """
    return sum(1 for k, s in shapes.items()
               if k.endswith(".weight") and len(s) in (2, 4) and ".downsample." not in f".{k}")


def recipe_text(config: Mapping[str, Any]) -> str:
    """A one-line recipe: optimiser and its settings, lr, batch, schedule, regularisation, epochs."""
    c = config
    opt = c.get("optimizer", "?")
    extras = []
    if opt == "sgd":
        extras.append(f"momentum {c.get('momentum', 0):g}" + (", Nesterov" if c.get("nesterov") else ""))
    if c.get("weight_decay"):
        extras.append(f"wd {c['weight_decay']:g}")
    parts = [f"{'SGD' if opt == 'sgd' else 'Adam' if opt == 'adam' else opt}" + (f" ({', '.join(extras)})" if extras else ""),
             f"lr {c.get('lr', 0):g}", f"batch {c.get('batch_size', '?')}"]
    sched = c.get("scheduler")
    if sched == "plateau":
        parts.append(f"ReduceLROnPlateau(×{c.get('plateau_factor', 0.1):g}, patience {c.get('plateau_patience', '?')})")
    elif sched == "cosine":
        parts.append("CosineAnnealingLR")
    elif sched == "onecycle":
        parts.append("OneCycleLR")
    if c.get("label_smoothing"):
        parts.append(f"label smoothing {c['label_smoothing']:g}")
    if c.get("ema_decay"):
        parts.append(f"EMA {c['ema_decay']:g}")
    if c.get("dropout"):
        parts.append(f"dropout {c['dropout']:g}")
    parts.append(f"{c.get('epochs', '?')} epochs" + (f", early stop {c['early_stopping']}" if c.get("early_stopping") else ""))
    if c.get("train_sizes"):
        parts.append(f"progressive resizing {c['train_sizes']} (size:epochs, then 32px)")
    return ", ".join(parts)


def size_phases(history: Sequence[Mapping[str, Any]]) -> list[dict[str, int]]:
    """Runs of epochs trained at one image size: [{"size", "first", "last"}, ...] (histories without
    `train_size` were all at 32px)."""
    phases: list[dict[str, int]] = []
    for h in history:
        size = int(h.get("train_size", 32))
        if phases and phases[-1]["size"] == size:
            phases[-1]["last"] = int(h["epoch"])
        else:
            phases.append({"size": size, "first": int(h["epoch"]), "last": int(h["epoch"])})
    return phases


def size_phases_text(history: Sequence[Mapping[str, Any]]) -> str:
    """"Epochs 1–5 trained on 16px images, 6–7 on 24px, 8 on 32px. …" or "" when all were 32px."""
    phases = size_phases(history)
    if all(p["size"] == 32 for p in phases):
        return ""
    spans = [(f"{p['first']}" if p["first"] == p["last"] else f"{p['first']}–{p['last']}") + f" on {p['size']}px"
             for p in phases]
    return ("Progressive resizing: epochs " + ", ".join(spans) + " images. Validation is always at 32px, so "
            "accuracy jumps when the training size grows.")


def format_duration(seconds: float | None) -> str:
    """"1 h 02 min", "12 min 05 s", "48 s"; "—" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


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
                mine = format_duration(meta.get("wall_time_s"))
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


# ------------------------------------------------------------------------------ attributions

# Which of explain.attribute's keyword arguments each method reads: the rest must not split the cache.
METHOD_PARAMS = {
    "Integrated Gradients": ("steps", "baseline"),
    "Saliency": (),
    "SmoothGrad": ("n_samples", "stdev"),
    "Guided Backprop": (),
    "Grad-CAM": ("layer",),
    "Occlusion": ("window", "stride", "baseline"),
}


def method_params(method: str, **params: Any) -> dict[str, Any]:
    """Only the parameters `method` uses (METHOD_PARAMS), so changing another one reuses the cache."""
    if method not in METHOD_PARAMS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHOD_PARAMS)}")
    return {k: params[k] for k in METHOD_PARAMS[method] if k in params and params[k] is not None}


def attribution_target(mode: str, probs: np.ndarray, label: int | None, chosen: int | None) -> int | None:
    """The class to explain: "predicted" → argmax, "true" → the label (None if unknown), "class" → chosen."""
    if mode == "predicted":
        return int(np.argmax(probs))
    if mode == "true":
        return None if label is None else int(label)
    if mode == "class":
        return None if chosen is None else int(chosen)
    raise ValueError(f"target mode must be 'predicted', 'true' or 'class', got {mode!r}")


# ------------------------------------------------------------------------------ commands


def out_dir_of(command: str, model: str, recipe: str) -> str:
    """The run folder a `python -m cifar.train ...` command writes to (--out-dir, else its default)."""
    try:
        args = shlex.split(command)
    except ValueError:
        args = []
    for i, a in enumerate(args):
        if a == "--out-dir" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--out-dir="):
            return a.split("=", 1)[1]
    return f"runs/{model}-{recipe}"


def portable_command(command: str, data_flags: str) -> str:
    """A recorded `python -m cifar.train ...` line, made to work on this machine.

    Keeps the model, recipe and every override (e.g. --epochs 60), but drops what belonged to the
    machine that ran it: its data and run folders (absolute paths there) and --resume (no resume
    state here); `data_flags` (this machine's --data-dir, maybe --download) goes on the end.
    """
    try:
        args = shlex.split(command)
    except ValueError:
        return command
    kept, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--data-dir", "--out-dir"):
            skip = True
        elif a in ("--resume", "--download", "--quiet") or a.startswith(("--data-dir=", "--out-dir=")):
            pass
        else:
            kept.append(a)
    return f"{shlex.join(kept)} {data_flags}".strip()


# ------------------------------------------------------------------------------ pixels

# 9 evenly spaced anchors of matplotlib's colormaps (RGB 0-255), interpolated linearly.
COLORMAPS = {
    "viridis": [(68, 1, 84), (71, 45, 123), (59, 82, 139), (44, 114, 142), (33, 145, 140), (40, 174, 128),
                (94, 201, 98), (173, 220, 48), (253, 231, 37)],
    "inferno": [(0, 0, 4), (33, 12, 74), (87, 16, 110), (138, 34, 106), (188, 55, 84), (228, 90, 49),
                (249, 142, 9), (249, 203, 53), (252, 255, 164)],
    "coolwarm": [(59, 76, 192), (98, 130, 234), (141, 176, 254), (185, 208, 249), (221, 220, 220),
                 (245, 196, 172), (244, 152, 122), (221, 95, 75), (180, 4, 38)],
}


def colormap(values: np.ndarray, name: str = "viridis") -> np.ndarray:
    """Values in [0, 1] (clipped; NaN → 0) → uint8 RGB of shape values.shape + (3,)."""
    anchors = np.asarray(COLORMAPS[name], dtype=np.float32)
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)), 0.0, 1.0) * (len(anchors) - 1)
    lo = np.floor(v).astype(np.int64).clip(0, len(anchors) - 2)
    frac = (v - lo)[..., None]
    return np.round(anchors[lo] * (1 - frac) + anchors[lo + 1] * frac).astype(np.uint8)


def upscale_nearest(image: np.ndarray, scale: int) -> np.ndarray:
    """Each pixel repeated scale × scale times: (H, W[, C]) → (H·s, W·s[, C]), no smoothing."""
    image = np.asarray(image)
    s = max(int(scale), 1)
    return image.repeat(s, axis=0).repeat(s, axis=1)


def channel_tiles(maps: np.ndarray, scale: int = 4, name: str = "viridis") -> list[np.ndarray]:
    """One colour image per channel of a (C, H, W) stack, each scaled to its own min..max.

    Per-channel scaling shows each channel's pattern; compare strengths with the captions. A flat
    channel (max == min) is drawn at the colormap's low end.
    """
    maps = np.asarray(maps, dtype=np.float32)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    norm = np.divide(maps - lo, span, out=np.zeros_like(maps), where=span > 0)
    return [upscale_nearest(colormap(m, name), scale) for m in norm]


def overlay(image: np.ndarray, shown: np.ndarray, opacity: float, mode: str = "signed", scale: int = 8) -> np.ndarray:
    """An attribution heatmap over an image, both upscaled nearest-neighbour.

    image: uint8 (H, W, 3). shown: explain.to_display output, [-1, 1] for "signed" (blue negative,
    red positive) or [0, 1] for "absolute" (inferno). Each pixel's heat colour is blended in with
    weight opacity × |value|, so pixels without attribution keep the image's own colour.
    """
    if mode not in ("signed", "absolute"):
        raise ValueError(f"mode must be 'signed' or 'absolute', got {mode!r}")
    img = np.asarray(image, dtype=np.float32)
    v = np.nan_to_num(np.asarray(shown, dtype=np.float32))
    if v.shape != img.shape[:2]:
        raise ValueError(f"attribution {v.shape} and image {img.shape[:2]} differ in size")
    heat = colormap((v + 1) / 2, "coolwarm") if mode == "signed" else colormap(v, "inferno")
    w = (float(np.clip(opacity, 0.0, 1.0)) * np.clip(np.abs(v), 0.0, 1.0))[..., None]
    out = np.round(img * (1 - w) + heat.astype(np.float32) * w).astype(np.uint8)
    return upscale_nearest(out, scale)


def heat_image(shown: np.ndarray, mode: str = "signed", scale: int = 8) -> np.ndarray:
    """The attribution map alone as a colour image (coolwarm for signed, inferno for absolute)."""
    v = np.nan_to_num(np.asarray(shown, dtype=np.float32))
    heat = colormap((v + 1) / 2, "coolwarm") if mode == "signed" else colormap(v, "inferno")
    return upscale_nearest(heat, scale)
