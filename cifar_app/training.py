"""What a training run and the tuning grid show: per-epoch history, image-size phases, the recipe in
words, and the lr × batch grid from cifar.tune's CSV. Pure functions on metadata and CSV rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

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
