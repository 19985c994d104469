"""The explanation scorecard and the per-image checks as the app shows them: reading the file, the
table rows and the Altair charts. Pure (no Streamlit): the pages draw what these return.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from cifar import scorecard as sc
from cifar.models import list_models
from cifar_app import advice
from cifar_app.store import Unavailable

SCORE_LABELS = {"spearman_abs": "Spearman |attr|", "spearman": "Spearman (signed)", "ssim": "SSIM"}
REFERENCE_COLOR, METHOD_COLOR = "#7f7f7f", "#d62728"


def _command(folder: Path) -> str:
    return f"python -m cifar.scorecard --checkpoints {folder} --data-dir <your CIFAR-10 folder>"


def read_scorecard(folder: Path) -> dict | None:
    """The scorecard in a checkpoint folder; None when absent; Unavailable when unreadable or another format."""
    path = Path(folder) / sc.SCORECARD_FILE
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise Unavailable(f"The explanation scorecard {path} cannot be read ({type(e).__name__}: {e}).",
                          advice.Advice(_command(folder), "recompute it")) from None
    if not isinstance(card, dict) or card.get("format") != sc.FORMAT or not isinstance(card.get("models"), dict):
        raise Unavailable(f"{path} is not an explanation scorecard of format {sc.FORMAT}.",
                          advice.Advice(_command(folder), "recompute it"))
    return card


def table(card: Mapping, titles: Mapping[str, str]) -> list[dict]:
    """One row per (model, method): the means the scorecard's verdict uses, rounded for reading."""
    rows = []
    for model in card["models"]:
        for r in sc.summary_rows(card, model):
            rows.append({
                "model": titles.get(model, model), "method": r["method"],
                "deletion AUC ↓": _round(r["deletion_auc"]), "insertion AUC ↑": _round(r["insertion_auc"]),
                "infidelity ↓ (median)": _round(r["infidelity"], 4, significant=True),
                "max-sensitivity ↓": _round(r["sensitivity"]),
                "sanity: Spearman |attr| (mean over the cascade)": _round(r["spearman_abs"]),
                "… with random logits": _round(r["spearman_abs_top"]),
                "… all blocks random": _round(r["spearman_abs_all"]),
                "sanity: SSIM (mean)": _round(r["ssim"]),
                "sanity check": ("reference" if r["method"] in sc.explain.REFERENCES else
                                 "fails" if sc.sanity_fails(r) else "passes" if r["spearman_abs"] is not None else "–"),
            })
    return rows


def _round(v, digits: int = 3, significant: bool = False):
    if v is None:
        return None
    return float(f"{v:.{digits}g}") if significant else round(float(v), digits)


def markdown_table(card: Mapping, titles: Mapping[str, str]) -> str:
    """The table as Markdown (the README's)."""
    rows = table(card, titles)
    cols = list(rows[0])
    def cell(v) -> str:
        return "–" if v is None else str(v).replace("|", "\\|")  # |attr| must not end a cell

    lines = ["| " + " | ".join(map(cell, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _is_ref(method: str) -> bool:
    return method in sc.explain.REFERENCES


def auc_chart(card: Mapping, titles: Mapping[str, str]) -> alt.Chart:
    """Mean deletion and insertion AUC per method, one panel per model and score; references in grey."""
    rows = []
    for model in card["models"]:
        for r in sc.summary_rows(card, model):
            for key, label in (("deletion_auc", "deletion AUC (lower is better)"),
                               ("insertion_auc", "insertion AUC (higher is better)")):
                rows.append({"model": titles.get(model, model), "method": r["method"], "score": label,
                             "value": r[key], "kind": "reference" if _is_ref(r["method"]) else "method"})
    df = pd.DataFrame(rows)
    return alt.Chart(df).mark_bar().encode(
        y=alt.Y("method:N", sort=None, title=None),
        x=alt.X("value:Q", title="mean over the sample"),
        color=alt.Color("kind:N", scale=alt.Scale(domain=["method", "reference"], range=[METHOD_COLOR, REFERENCE_COLOR]),
                        legend=None),
        tooltip=["model", "method", "score", alt.Tooltip("value:Q", format=".3f")],
    ).properties(width=220, height=170).facet(row=alt.Row("model:N", title=None),
                                              column=alt.Column("score:N", title=None))


def sanity_chart(card: Mapping, titles: Mapping[str, str], score: str = "spearman_abs") -> alt.Chart:
    """Mean similarity to the original map at each randomisation depth, one line per method, per model."""
    rows = []
    for model, entry in card["models"].items():
        for method, m in entry["methods"].items():
            san = m.get("sanity")
            if not san:
                continue
            for depth, (label, values) in enumerate(zip(m["sanity_steps"], san[score])):
                rows.append({"model": titles.get(model, model), "method": method, "depth": depth,
                             "randomised down to": label, "value": float(np.mean(values))})
    df = pd.DataFrame(rows)
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("depth:Q", title="blocks re-initialised (logits first)", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=f"{SCORE_LABELS[score]} to the original map", scale=alt.Scale(domain=[-0.2, 1])),
        color=alt.Color("method:N", sort=list(sc.methods_scored())),
        strokeDash=alt.condition(alt.FieldOneOfPredicate("method", list(sc.explain.REFERENCES)),
                                 alt.value([4, 3]), alt.value([1, 0])),
        tooltip=["model", "method", "randomised down to", alt.Tooltip("value:Q", format=".3f")],
    ).properties(width=300, height=220).facet(column=alt.Column("model:N", title=None))


def mean_curves_chart(card: Mapping, titles: Mapping[str, str], kind: str = "deletion") -> alt.Chart:
    """The sample's mean deletion (or insertion) curve of each method, per model."""
    rows = []
    for model, entry in card["models"].items():
        for method, m in entry["methods"].items():
            curve = m[f"{kind}_curve"]
            for i, p in enumerate(curve):
                rows.append({"model": titles.get(model, model), "method": method,
                             "fraction": i / (len(curve) - 1), "probability": p})
    return alt.Chart(pd.DataFrame(rows)).mark_line().encode(
        x=alt.X("fraction:Q", title=f"share of pixels {'removed' if kind == 'deletion' else 'restored'}",
                axis=alt.Axis(format="%")),
        y=alt.Y("probability:Q", title="mean p(explained class)", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("method:N", sort=list(sc.methods_scored())),
        strokeDash=alt.condition(alt.FieldOneOfPredicate("method", list(sc.explain.REFERENCES)),
                                 alt.value([4, 3]), alt.value([1, 0])),
        tooltip=["model", "method", alt.Tooltip("fraction:Q", format=".0%"), alt.Tooltip("probability:Q", format=".3f")],
    ).properties(width=300, height=220).facet(column=alt.Column("model:N", title=None))


def image_curves_chart(result: Mapping, method: str) -> alt.Chart:
    """One image's deletion and insertion curves for a method, with the random-order floor dashed."""
    rows = []
    for kind in ("deletion", "insertion"):
        for who, key in ((method, kind), ("random order", f"random_{kind}")):
            curve = result[key]
            for i, p in enumerate(curve):
                rows.append({"curve": kind, "order": who, "fraction": i / (len(curve) - 1), "probability": float(p)})
    return alt.Chart(pd.DataFrame(rows)).mark_line(point=True).encode(
        x=alt.X("fraction:Q", title="share of pixels changed", axis=alt.Axis(format="%")),
        y=alt.Y("probability:Q", title="p(explained class)", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("curve:N", scale=alt.Scale(domain=["deletion", "insertion"], range=["#1f77b4", "#ff7f0e"])),
        strokeDash=alt.StrokeDash("order:N", sort=[method, "random order"], title="pixel order"),
        tooltip=["curve", "order", alt.Tooltip("fraction:Q", format=".0%"), alt.Tooltip("probability:Q", format=".3f")],
    ).properties(height=220)


def cascade_chart(run: Mapping) -> alt.Chart:
    """One image's similarity to the original map at each step of the cascade (three scores)."""
    rows = [{"step": i, "randomised down to": label, "score": SCORE_LABELS[k], "value": float(run["scores"][k][i])}
            for k in SCORE_LABELS for i, label in enumerate(run["steps"])]
    return alt.Chart(pd.DataFrame(rows)).mark_line(point=True).encode(
        x=alt.X("step:Q", title="blocks re-initialised (logits first)", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title="similarity to the original map", scale=alt.Scale(domain=[-1, 1])),
        color=alt.Color("score:N", sort=list(SCORE_LABELS.values())),
        tooltip=["randomised down to", "score", alt.Tooltip("value:Q", format=".3f")],
    ).properties(height=220)


def sample_caption(card: Mapping, titles: Mapping[str, str]) -> str:
    """Which images the scorecard used, per model, and how."""
    s = card["settings"]
    parts = [f"{titles.get(m, m)}: {len(e['sample']['indices'])} test images, {e['sample']['errors']} of them its errors"
             for m, e in card["models"].items()]
    return (f"{'; '.join(parts)} (seed {s['seed']}; each model's own errors, alternating with images it gets right). "
            f"Every map explains the predicted class. Deletion and insertion: {s['steps']} steps, deletion towards "
            f"a black image, insertion from a blurred copy; infidelity: {s['infidelity_samples']} noisy samples per "
            f"image; max-sensitivity on the first {s['sensitivity_images']} images ({s['sensitivity_samples']} samples, "
            f"radius {s['sensitivity_radius']:g}); the sanity cascade on the first {s['cascade_images']} images. "
            f"Integrated Gradients ran with {s['ig_steps']} steps and SmoothGrad with {s['smoothgrad_samples']} samples "
            "here, to keep the run short.")


def missing_models(card: Mapping | None) -> list[str]:
    """Registered models the scorecard does not cover."""
    return [m for m in list_models() if not card or m not in card["models"]]


def step_labels(steps: Sequence[str]) -> list[str]:
    """Captions for the cascade's maps: "original", then "+ fc", "+ layer4.1", …"""
    return [s if i == 0 else f"+ {s}" for i, s in enumerate(steps)]
