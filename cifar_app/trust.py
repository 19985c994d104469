"""Can this prediction be trusted? The calibration page's tables and the OOD verdict on one image.

Pure functions (no Streamlit; numpy only, as the app server must not load scikit-learn or SciPy): they
read what `python -m cifar.trust` wrote beside each checkpoint (`<model>.trust.json`, the fitted
temperature, calibration and OOD table; `<model>.mahalanobis.npz`) and turn it, with the shipped
test-set logits, into the records the pages show.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cifar import calibration, ood
from cifar.checkpoints import run_files
from cifar.models import get_model
from cifar_app import advice
from cifar_app.advice import Advice
from cifar_app.store import Paths, Unavailable

METRICS = (  # summary key, label, how to read it
    ("accuracy", "accuracy", "T keeps it"),
    ("confidence", "mean confidence", "best near the accuracy"),
    ("ece", "ECE, 15 equal-width bins", "lower is better"),
    ("ece_adaptive", "ECE, 15 equal-mass bins", "lower is better"),
    ("mce", "MCE, 15 equal-width bins", "lower is better"),
    ("nll", "NLL in nats", "lower is better"),
    ("brier", "Brier score", "lower is better"),
)


# ------------------------------------------------------------------------------ files


def trust_advice(model: str, paths: Paths) -> Advice:
    """Restore the shipped trust files, else the command that recomputes them (needs the dataset)."""
    files = run_files(paths.checkpoints, model)
    return advice.restore(files.trust, files.mahalanobis) or Advice(
        f"python -m cifar.trust --checkpoint {files.weights.as_posix()} {advice.data_flags(paths.data)}",
        "fits the temperature and the OOD statistics from the weights and the dataset: minutes on a CPU")


def read_trust(model: str, paths: Paths) -> dict[str, Any]:
    """The checkpoint's <model>.trust.json, or Unavailable naming the file and the fix."""
    path = run_files(paths.checkpoints, model).trust
    title = get_model(model).title
    if not path.is_file():
        raise Unavailable(f"The {title} calibration and OOD file {path} is missing.", trust_advice(model, paths))
    try:
        data = json.loads(path.read_text())
        float(data["temperature"]), dict(data["ood"]["thresholds"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Unavailable(f"The {title} calibration and OOD file {path} cannot be read ({type(e).__name__}: {e}).",
                          trust_advice(model, paths)) from None
    return data


def read_stats(model: str, paths: Paths) -> ood.MahalanobisStats:
    """The checkpoint's Mahalanobis statistics, or Unavailable naming the file and the fix."""
    path = run_files(paths.checkpoints, model).mahalanobis
    title = get_model(model).title
    if not path.is_file():
        raise Unavailable(f"The {title} Mahalanobis statistics {path} are missing.", trust_advice(model, paths))
    try:
        return ood.load_stats(path)
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise Unavailable(f"The {title} Mahalanobis statistics {path} cannot be read ({type(e).__name__}: {e}).",
                          trust_advice(model, paths)) from None


# ------------------------------------------------------------------------------ calibration


def test_logits(evaluation: Mapping[str, np.ndarray]) -> np.ndarray:
    """The stored test-set logits, else the log of the probabilities (the same up to a constant per row)."""
    if "logits" in evaluation:
        return np.asarray(evaluation["logits"], dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(evaluation["probs"], dtype=np.float64))


def calibration_view(evaluation: Mapping[str, np.ndarray], temperature: float) -> dict[str, Any]:
    """Everything the calibration page draws for one model, before (T = 1) and after temperature T.

    summary: calibration_summary per side; bins: reliability-bin records; confidences: per image, top
    probability and whether it was right; per_class: calibration.per_class_calibration rows.
    """
    labels = np.asarray(evaluation["labels"])
    z = test_logits(evaluation)
    sides = {"before": calibration.softmax(z), "after": calibration.softmax(z / temperature)}
    view: dict[str, Any] = {"temperature": float(temperature), "n": int(len(labels)), "summary": {}, "bins": [],
                            "confidences": {}, "per_class": {}}
    for side, probs in sides.items():
        view["summary"][side] = calibration.calibration_summary(labels, probs)
        bins = calibration.reliability_bins(labels, probs)
        for i in range(len(bins["count"])):
            if bins["count"][i]:
                view["bins"].append({"side": side, "lower": float(bins["bin_lower"][i]),
                                     "upper": float(bins["bin_upper"][i]), "confidence": float(bins["confidence"][i]),
                                     "accuracy": float(bins["accuracy"][i]), "count": int(bins["count"][i])})
        view["confidences"][side] = {"confidence": probs.max(1).astype(np.float32),
                                     "correct": probs.argmax(1) == labels}
        view["per_class"][side] = calibration.per_class_calibration(labels, probs, [str(c) for c in range(probs.shape[1])])
    return view


def summary_records(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per metric: before, after, and what a lower value means."""
    s = view["summary"]
    return [{"metric": f"{label} ({note})", "before (T = 1)": s["before"][key],
             f"after (T = {view['temperature']:.4g})": s["after"][key]} for key, label, note in METRICS]


def per_class_records(view: Mapping[str, Any], names: Sequence[str]) -> list[dict[str, Any]]:
    """Per class: images predicted as it, their mean confidence before/after T, and their precision."""
    rows = []
    for c, (b, a) in enumerate(zip(view["per_class"]["before"], view["per_class"]["after"])):
        rows.append({"class": names[c], "predicted": b["predicted"], "precision": b["accuracy"],
                     "confidence before": b["confidence"], "confidence after": a["confidence"],
                     "gap before": b["gap"], "gap after": a["gap"],
                     "class-wise ECE before": b["classwise_ece"], "class-wise ECE after": a["classwise_ece"]})
    return rows


# ------------------------------------------------------------------------------ OOD

SHORT_TITLES = {"msp": "MSP", "energy": "energy", "mahalanobis": "Mahalanobis", ood.COMBINED.name: "combined"}


def ood_records(trust: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per OOD set: "AUROC / FPR@95" of each detector (the table python -m cifar.trust measured),
    one column per detector so the table fits beside the page's other content."""
    rows = []
    for row in trust["ood"]["sets"].values():
        out = {"OOD set": row["title"]}
        for name, short in SHORT_TITLES.items():
            if name in row:
                out[f"{short}: AUROC / FPR@95"] = f"{row[name]['auroc']:.3f} / {row[name]['fpr95']:.3f}"
        rows.append(out)
    return rows


def image_scores(logits: np.ndarray, features: np.ndarray | None, stats: ood.MahalanobisStats | None,
                 quantiles: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each detector's score for one image (logits (classes,), features (dim,)), and the combined one."""
    s = ood.scores(np.atleast_2d(logits), None if features is None else np.atleast_2d(features), stats)
    s[ood.COMBINED.name] = ood.combined(s, dict(quantiles))
    return {k: float(v[0]) for k, v in s.items()}


def verdict(scores: Mapping[str, float], thresholds: Mapping[str, float],
            quantiles: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Whether one image is unlike CIFAR-10 for a model, which detectors say so, and the sentence to show.

    unlike: the combined detector flags it (its lowest percentile over the three detectors is below the
    one that keeps 95% of the CIFAR-10 test images).
    """
    base = {k: v for k, v in scores.items() if k in ood.DETECTORS and k in quantiles}
    pct = {k: float(ood.percentile(v, quantiles[k])) for k, v in base.items()}
    key = ood.COMBINED.name
    unlike = bool(key in scores and key in thresholds and scores[key] < thresholds[key])
    names = [ood.DETECTORS[k].title for k, p in sorted(pct.items(), key=lambda kv: kv[1])
             if unlike and p <= thresholds[key]] if unlike else []
    low = min(pct.values()) if pct else 1.0
    if unlike:
        than = "every CIFAR-10 test image" if low <= 0 else f"{1 - low:.1%} of the CIFAR-10 test images"
        text = (f"This image is unlike CIFAR-10 for this model: by {' and '.join(names)}, it scores lower than "
                f"{than}. Treat its prediction as a guess, whatever the confidence says.")
    else:
        text = (f"Like a CIFAR-10 test image for this model: no detector puts it below "
                f"{thresholds.get(key, 0.05):.1%} of the test images (its lowest percentile: {low:.1%}).")
    return {"unlike": unlike, "percentiles": pct, "names": names, "text": text}


def score_records(scores: Mapping[str, float], thresholds: Mapping[str, float],
                  percentiles: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per detector (and the combined one): the image's score, its percentile among the CIFAR-10
    test images, the threshold and whether it is flagged."""
    flagged = ood.flags(dict(scores), dict(thresholds))
    titles = {**{k: d.title for k, d in ood.DETECTORS.items()}, ood.COMBINED.name: ood.COMBINED.title}
    return [{"detector": titles[k], "score": scores[k],
             "percentile": percentiles.get(k, scores[k] if k == ood.COMBINED.name else float("nan")),
             "threshold (95% of CIFAR-10 above)": thresholds[k], "unlike CIFAR-10": "yes" if flagged[k] else "no"}
            for k in scores if k in flagged]
