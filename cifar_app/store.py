"""The app's file store: where it looks, what it reads, and what it says when a file is missing or broken.

Plain functions (no Streamlit): the pages call them through the cached loaders in cifar_app.cache.
Every failure is an `Unavailable` carrying one message that names the file, and the advice
(cifar_app.advice) that fits the damage, so a page can show it and keep the other model working.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifar import CLASSES, MEAN, STD
from cifar.bundle import BUNDLE_FILE, TestImages, load_bundle
from cifar.checkpoints import run_files
from cifar.data import DataError, cifar_test_file, resolve_data_dir
from cifar.models import get_model
from cifar_app import advice
from cifar_app.advice import Advice
from cifar_app.tables import short_name

ENV_CHECKPOINTS = "CIFAR_CHECKPOINTS"
# Where the app runs its models: cpu (the default: the hosted app has no GPU), or auto, cuda, mps.
ENV_DEVICE = "CIFAR_DEVICE"
DEFAULT_CHECKPOINTS = "checkpoints"
TUNE_FILE = "tune_cnn.csv"


class Unavailable(RuntimeError):
    """Something the app needs is missing or broken: `message` says what, `advice` how to get it back."""

    def __init__(self, message: str, fix: Advice | None = None):
        super().__init__(message)
        self.message = message
        self.advice = fix

    @property
    def command(self) -> str:
        return self.advice.command if self.advice else ""


@dataclass(frozen=True)
class Paths:
    """Where the app looks: the checkpoint folder and the CIFAR-10 folder."""

    checkpoints: Path
    data: Path

    def checkpoint(self, model: str) -> Path:
        return run_files(self.checkpoints, model).weights

    def evaluation(self, model: str) -> Path:
        return run_files(self.checkpoints, model).evaluation

    def metrics(self, model: str) -> Path:
        return run_files(self.checkpoints, model).metrics

    @property
    def bundle(self) -> Path:
        return self.checkpoints / BUNDLE_FILE

    @property
    def tune_csv(self) -> Path:
        return self.checkpoints / TUNE_FILE

    @property
    def test_batch(self) -> Path:
        return cifar_test_file(self.data)


def app_paths() -> Paths:
    """$CIFAR_CHECKPOINTS, else ./checkpoints, else the repository's checkpoints/ (a server started from
    another folder still finds the shipped files); and cifar.data.resolve_data_dir() ($CIFAR10_DIR or ./data)."""
    folder = Path(os.environ.get(ENV_CHECKPOINTS) or DEFAULT_CHECKPOINTS)
    if not os.environ.get(ENV_CHECKPOINTS) and not folder.is_dir():
        folder = advice.REPO / DEFAULT_CHECKPOINTS
    return Paths(folder, resolve_data_dir())


def file_key(path: Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of a file, None when absent: part of every cache key, so a replaced file is reread."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _title(model: str) -> str:
    return get_model(model).title


# ------------------------------------------------------------------------------------ checkpoints


def read_meta(model: str, paths: Paths) -> dict[str, Any]:
    """The checkpoint's metadata (cheap: the header only), or Unavailable with the advice that fits."""
    from cifar.checkpoints import CheckpointError, read_metadata

    path = paths.checkpoint(model)
    try:
        meta = read_metadata(path)
    except CheckpointError as e:
        what = f"{path} is missing." if not path.exists() else f"cannot be read: {e}"
        raise Unavailable(f"The {_title(model)} checkpoint {what}", advice.for_checkpoint(model, paths)) from None
    if meta.get("model") != model:
        raise Unavailable(f"{path} holds a {meta.get('model')!r} model, not {model!r}.",
                          advice.for_checkpoint(model, paths))
    return meta


def load_checkpoint(model: str, paths: Paths):
    """(model in eval mode, metadata), or Unavailable naming the file and the advice that fits."""
    import torch

    from cifar.checkpoints import CheckpointError, load_model

    from cifar.runtime import Runtime

    meta = read_meta(model, paths)
    device = os.environ.get(ENV_DEVICE) or "cpu"
    try:
        rt = Runtime.decide(device, "fp32")
    except ValueError as e:
        raise Unavailable(f"{ENV_DEVICE}={device}: {e}") from None
    try:
        net, meta = load_model(paths.checkpoint(model), expect=model)
    except CheckpointError as e:
        raise Unavailable(f"The {_title(model)} checkpoint is damaged: {e}",
                          advice.for_checkpoint(model, paths, meta)) from None
    # channels_last on the CPU, as cifar.runtime trains: oneDNN's CPU convolutions are faster in NHWC, and
    # cifar.explain's copies and inputs follow the model's format (IG, 50 steps, ResNet18: 1.1 s measured).
    # On MPS, NCHW (Runtime's small MPS path); explain moves every input to the model's device.
    net = rt.prepare_model(net)
    return (net.to(memory_format=torch.channels_last) if rt.device.type == "cpu" else net), meta


def tensor_shapes(model: str, paths: Paths) -> dict[str, tuple[int, ...]]:
    """Name → shape of every tensor in the checkpoint, from the safetensors header (no weights read)."""
    from safetensors import safe_open

    with safe_open(str(paths.checkpoint(model)), framework="np") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def class_names(meta: dict[str, Any] | None) -> tuple[str, ...]:
    """Display names of the classes a checkpoint was trained on (the report's short names for CIFAR-10's)."""
    return tuple(short_name(str(n)) for n in (meta or {}).get("classes") or CLASSES)


def normalization(meta: dict[str, Any] | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the checkpoint's inputs were normalised with, from its metadata."""
    norm = (meta or {}).get("normalization") or {}
    return tuple(norm.get("mean") or MEAN), tuple(norm.get("std") or STD)


# ------------------------------------------------------------------------------------ evaluation

_EVAL_KEYS = ("probs", "preds", "labels")


def load_eval(model: str, paths: Paths) -> dict[str, np.ndarray]:
    """probs (N, 10), preds (N,), labels (N,) of a checkpoint's test-set evaluation (logits dropped)."""
    path = paths.evaluation(model)
    if not path.is_file():
        raise Unavailable(f"The {_title(model)} test-set predictions {path} are missing.",
                          advice.for_evaluation(model, paths))
    try:
        with np.load(path) as z:
            ev = {k: z[k] for k in _EVAL_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise Unavailable(f"The {_title(model)} test-set predictions {path} cannot be read ({type(e).__name__}: {e}).",
                          advice.for_evaluation(model, paths)) from None
    n = len(ev["labels"])
    if ev["probs"].ndim != 2 or ev["probs"].shape[0] != n or ev["preds"].shape != (n,):
        raise Unavailable(f"{path} has inconsistent shapes {[ev[k].shape for k in _EVAL_KEYS]}.",
                          advice.for_evaluation(model, paths))
    return ev


def load_summary(model: str, paths: Paths) -> dict[str, Any]:
    """metrics.summarize() of the evaluation: the .metrics.json, or recomputed when it is missing or stale."""
    ev = load_eval(model, paths)
    try:
        summary = json.loads(paths.metrics(model).read_text())
        if summary.get("n") == len(ev["labels"]) and "classification" in summary:
            return summary
    except (OSError, ValueError):
        pass
    try:
        # Imported only here: scikit-learn costs the server 66-131 MB (import sklearn.metrics, measured
        # after and before pandas), and the hosted demo (Pipfile) leaves it out because the shipped
        # .metrics.json files make it unnecessary.
        from cifar.metrics import summarize
    except ImportError:
        raise Unavailable(f"The {_title(model)} metrics {paths.metrics(model)} are missing or stale, and recomputing "
                          f"them needs scikit-learn, which this installation lacks.",
                          advice.for_evaluation(model, paths)) from None
    return summarize(ev["labels"], ev["probs"], list(CLASSES))


# ------------------------------------------------------------------------------------ images


def load_test_images(paths: Paths) -> TestImages:
    """All 10,000 test images when the data folder holds the test batch, else the shipped demo bundle.

    Reads only test_batch (30 MB), not the 150 MB training set that load_cifar10 would also load.
    """
    from cifar.data import load_test_split

    try:
        images, labels, test_file = load_test_split(paths.data)
        return TestImages(images, labels, np.arange(len(labels)), full=True, source=str(test_file))
    except DataError:
        pass  # no dataset (a fresh clone) or a broken one: the demo bundle
    path = paths.bundle
    if not path.is_file():
        raise Unavailable(f"No test images: the demo bundle {path} is missing and {paths.test_batch} does not exist.",
                          advice.for_bundle(paths))
    try:
        return load_bundle(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise Unavailable(f"The demo bundle {path} cannot be read ({type(e).__name__}: {e}).",
                          advice.for_bundle(paths)) from None


def recorded_source(summaries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Which CIFAR-10 the numbers come from, as their evaluations recorded it ({"name", "official", ...};
    cifar.evaluate writes it into the metrics JSON), whatever data this machine holds; None if not recorded."""
    recorded = [s.get("data") for s in summaries if isinstance(s.get("data"), dict) and "name" in s["data"]]
    return recorded[0] if recorded else None


# ------------------------------------------------------------------------------------ tuning


def read_tune_rows(paths: Paths) -> list[dict[str, str]] | None:
    """The rows of checkpoints/tune_cnn.csv (cifar.tune's output), or None when there is none."""
    path = paths.tune_csv
    if not path.is_file():
        return None
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise Unavailable(f"The tuning results {path} cannot be read ({type(e).__name__}: {e}).",
                          advice.for_tuning(paths)) from None
