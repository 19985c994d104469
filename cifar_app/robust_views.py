"""The Robustness page's pure parts: reading checkpoints/robustness.json, its tables and its charts.

No Streamlit here (tests read the charts back with .to_dict()). The file is written by
`python -m cifar.robustness`; see that module for what each number means.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

from cifar.models import get_model, list_models
from cifar_app.charts import MODEL_COLORS

RESULTS_FILE = "robustness.json"
ANCHOR = ("A standard ResNet-18 at 95.0% clean accuracy keeps 74.0% mean accuracy on CIFAR-10-C "
          "(Hendrycks & Dietterich 2019; AugMix: 88.6%).")


class ResultsError(ValueError):
    """The results file is there but cannot be read as robustness results."""


def read_results(path: Path) -> dict[str, Any] | None:
    """The results dict, None when the file does not exist; ResultsError when it is not valid."""
    if not path.exists():
        return None
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ResultsError(f"{path} is not readable JSON ({e})") from e
    if not isinstance(res, dict) or not isinstance(res.get("models"), dict) or "summary" not in res:
        raise ResultsError(f"{path} does not hold robustness results (no 'models' or 'summary')")
    return res


def _title(model: str) -> str:
    try:
        return get_model(model).title
    except Exception:
        return model


def _model_scale(models: list[str]) -> alt.Scale:
    titles = [_title(m) for m in models]
    order = {m: i for i, m in enumerate(list_models())}
    colors = [MODEL_COLORS[order.get(m, i) % len(MODEL_COLORS)] for i, m in enumerate(models)]
    return alt.Scale(domain=titles, range=colors)


def corruption_rows(res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Long rows: model, corruption (title), family, severity, accuracy; severity 0 = clean, per corruption."""
    rows = []
    info = res.get("corruptions", {})
    for model, m in res["models"].items():
        for name, accs in m.get("corruptions", {}).items():
            meta = info.get(name, {})
            rows.append({"model": _title(model), "corruption": meta.get("title", name), "family": meta.get("family", ""),
                         "severity": 0, "accuracy": m["clean_accuracy"]})
            for s, a in zip(res.get("severities", range(1, 6)), accs):
                rows.append({"model": _title(model), "corruption": meta.get("title", name),
                             "family": meta.get("family", ""), "severity": int(s), "accuracy": float(a)})
    return rows


def summary_rows(res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per model: clean, mean corruption accuracy, degradation, mCE and relative mCE vs the baseline."""
    out = []
    base = res.get("baseline")
    for model, s in res["summary"].items():
        pct = (lambda v: None if v is None else round(100 * v, 1))
        out.append({"model": _title(model), "clean accuracy (subset) %": pct(s.get("clean_accuracy")),
                    "mean corruption accuracy %": pct(s.get("mean_corruption_accuracy")),
                    "mean error added, points": pct(s.get("mean_degradation")),
                    f"mCE vs {_title(base) if base else 'baseline'} %": pct(s.get("mce")),
                    f"relative mCE vs {_title(base) if base else 'baseline'} %": pct(s.get("relative_mce"))})
    return out


def corruption_table(res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per corruption: family, and each model's accuracy (%) at severities 1..5 and their mean."""
    rows = []
    info = res.get("corruptions", {})
    names = list(info) or sorted({n for m in res["models"].values() for n in m.get("corruptions", {})})
    for name in names:
        row: dict[str, Any] = {"corruption": info.get(name, {}).get("title", name),
                               "family": info.get(name, {}).get("family", "")}
        for model, m in res["models"].items():
            accs = m.get("corruptions", {}).get(name)
            row[f"{_title(model)} s1–s5 %"] = " / ".join(f"{100 * a:.0f}" for a in accs) if accs else "—"
            row[f"{_title(model)} mean %"] = round(100 * sum(accs) / len(accs), 1) if accs else None
        rows.append(row)
    return rows


def epsilon_rows(res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Long rows: model, attack, ε (in 1/255), accuracy."""
    rows = []
    for model, m in res["models"].items():
        adv = m.get("adversarial") or {}
        for attack in ("fgsm", "pgd"):
            for e, a in zip(adv.get("epsilons_255", []), adv.get(attack, []) or []):
                rows.append({"model": _title(model), "attack": attack.upper(), "epsilon": float(e), "accuracy": float(a)})
    return rows


def epsilon_table(res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per ε: each model × attack's accuracy in %, for the page's table beside the chart."""
    table: dict[float, dict[str, Any]] = {}
    for r in epsilon_rows(res):
        row = table.setdefault(r["epsilon"], {"ε": f"{r['epsilon']:g}/255"})
        row[f"{r['model']} {r['attack']}"] = round(100 * r["accuracy"], 1)
    return [table[e] for e in sorted(table)]


def corruption_bars(res: Mapping[str, Any], height: int = 480) -> alt.Chart:
    """Mean accuracy over severities 1–5 per corruption, the models side by side, clean accuracy as ticks."""
    df = pd.DataFrame([r for r in corruption_rows(res) if r["severity"] > 0],
                      columns=["model", "corruption", "family", "severity", "accuracy"])
    mean = df.groupby(["model", "corruption", "family"], as_index=False, sort=False)["accuracy"].mean()
    order = list(dict.fromkeys(df["corruption"]))
    models = list(res["models"])
    return alt.Chart(mean).mark_bar().encode(
        y=alt.Y("corruption:N", sort=order, title=None),
        yOffset=alt.YOffset("model:N"),
        x=alt.X("accuracy:Q", title="accuracy (mean of severities 1–5)", axis=alt.Axis(format=".0%"),
                scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("model:N", title=None, scale=_model_scale(models), legend=alt.Legend(orient="top")),
        tooltip=["model:N", "corruption:N", "family:N", alt.Tooltip("accuracy:Q", format=".1%")],
    ).properties(height=height, title="Accuracy per corruption")


def severity_lines(res: Mapping[str, Any], height: int = 360) -> alt.Chart:
    """Accuracy against severity (0 = clean), the mean over corruptions, one line per model."""
    df = pd.DataFrame(corruption_rows(res), columns=["model", "corruption", "family", "severity", "accuracy"])
    mean = df.groupby(["model", "severity"], as_index=False)["accuracy"].mean()
    return alt.Chart(mean).mark_line(point=True).encode(
        x=alt.X("severity:Q", title="severity (0 = clean)", axis=alt.Axis(values=[0, 1, 2, 3, 4, 5], format="d")),
        y=alt.Y("accuracy:Q", title="accuracy (mean of corruptions)", axis=alt.Axis(format=".0%"),
                scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("model:N", title=None, scale=_model_scale(list(res["models"])), legend=alt.Legend(orient="top")),
        tooltip=["model:N", "severity:Q", alt.Tooltip("accuracy:Q", format=".1%")],
    ).properties(height=height, title="Accuracy against severity")


def epsilon_lines(res: Mapping[str, Any], height: int = 360) -> alt.Chart:
    """Accuracy against the L∞ budget ε, solid FGSM, dashed PGD, one colour per model."""
    df = pd.DataFrame(epsilon_rows(res), columns=["model", "attack", "epsilon", "accuracy"])
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("epsilon:Q", title="ε (L∞, in 1/255 of the pixel range)"),
        y=alt.Y("accuracy:Q", title="accuracy under attack", axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("model:N", title=None, scale=_model_scale(list(res["models"])), legend=alt.Legend(orient="top")),
        strokeDash=alt.StrokeDash("attack:N", title=None, scale=alt.Scale(domain=["FGSM", "PGD"], range=[[1, 0], [6, 3]])),
        tooltip=["model:N", "attack:N", alt.Tooltip("epsilon:Q", format="g", title="ε ×255"),
                 alt.Tooltip("accuracy:Q", format=".1%")],
    ).properties(height=height, title="Accuracy against ε")


def provenance(res: Mapping[str, Any]) -> str:
    """One line: which images, which data, when, on what, how long; and the command."""
    sub = res.get("subset", {})
    n, adv_n = sub.get("n"), sub.get("adv_n")
    t = res.get("timing_s", {}).get("total_compute")
    mins = f"{t / 60:.0f} min of compute" if t else "time not recorded"
    done = "" if res.get("complete", True) else " **Partial run:** not every corruption or attack finished."
    return (f"{n:,} test images ({sub.get('per_class')} per class, seed {sub.get('seed')}) for the corruptions, "
            f"{adv_n:,} for the attacks; {res.get('data', {}).get('name', 'data not recorded')}; "
            f"{res.get('hardware', '')}; {mins}; written {res.get('written', '?')}.{done}")
