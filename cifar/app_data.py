"""What the app reads from disk, and what it tells the user when a file is missing or broken.

Plain functions (no Streamlit): the pages call them through thin `st.cache_*` wrappers in
app_pages/_shared.py. Every failure is an `Unavailable` carrying one message that names the file and
the exact command that rebuilds it, so a page can show it and keep the other model working.
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

from cifar import analysis
from cifar.bundle import BUNDLE_FILE, TestImages, load_bundle
from cifar.data import DataError, resolve_data_dir

ENV_CHECKPOINTS = "CIFAR_CHECKPOINTS"
DEFAULT_CHECKPOINTS = "checkpoints"
MODELS = ("cnn", "resnet18")
TITLES = {"cnn": "CustomCNN", "resnet18": "ResNet18"}
# The recipe each shipped model was trained with, for the rebuild command of a file whose own
# metadata cannot be read (a readable checkpoint names its command in its metadata).
SHIPPED_RECIPE = {"cnn": "fast", "resnet18": "paper"}  # tests/test_shipped.py keeps this in step
TUNE_FILE = "tune_cnn.csv"


class Unavailable(RuntimeError):
    """Something the app needs is missing or broken: `message` says what, `command` how to rebuild it."""

    def __init__(self, message: str, command: str = ""):
        super().__init__(message)
        self.message = message
        self.command = command


@dataclass(frozen=True)
class Paths:
    """Where the app looks: the checkpoint folder and the CIFAR-10 folder."""

    checkpoints: Path
    data: Path

    def checkpoint(self, model: str) -> Path:
        return self.checkpoints / f"{model}.safetensors"

    def evaluation(self, model: str) -> Path:
        return self.checkpoints / f"{model}.eval.npz"

    def metrics(self, model: str) -> Path:
        return self.checkpoints / f"{model}.metrics.json"

    @property
    def bundle(self) -> Path:
        return self.checkpoints / BUNDLE_FILE

    @property
    def tune_csv(self) -> Path:
        return self.checkpoints / TUNE_FILE


def app_paths() -> Paths:
    """$CIFAR_CHECKPOINTS (default ./checkpoints) and cifar.data.resolve_data_dir() ($CIFAR10_DIR or ./data)."""
    return Paths(Path(os.environ.get(ENV_CHECKPOINTS) or DEFAULT_CHECKPOINTS), resolve_data_dir())


def file_key(path: Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of a file, None when absent: part of every cache key, so a replaced file is reread."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


# ------------------------------------------------------------------------------------ commands


def has_test_batch(data_dir: Path) -> bool:
    from cifar.data import BATCH_FOLDER, TEST_FILE

    root = Path(data_dir)
    folder = root if root.name == BATCH_FOLDER else root / BATCH_FOLDER
    return (folder / TEST_FILE).is_file()


def _data_flags(data_dir: Path) -> str:
    # Without the data here, the command must fetch it: --download puts it into that folder.
    return f"--data-dir {data_dir}" + ("" if has_test_batch(data_dir) else " --download")


def rebuild_command(model: str, paths: Paths, meta: dict[str, Any] | None = None) -> str:
    """Shell lines that retrain `model` and copy the result where the app looks.

    Uses the command stored in the checkpoint's metadata when it could be read (with this machine's
    data folder and the default run folder), else the shipped recipe. cifar.train writes
    <out-dir>/<model>.safetensors + .eval.npz + .metrics.json.
    """
    if meta and meta.get("command"):
        train = analysis.portable_command(meta["command"], _data_flags(paths.data))
        recipe = meta.get("recipe", SHIPPED_RECIPE[model])
    else:
        recipe = SHIPPED_RECIPE[model]
        train = f"python -m cifar.train --model {model} --recipe {recipe} {_data_flags(paths.data)}"
    out = analysis.out_dir_of(train, model, recipe)
    files = " ".join(f"{out}/{model}{s}" for s in (".safetensors", ".eval.npz", ".metrics.json"))
    lines = [train, f"cp {files} {paths.checkpoints}/"]
    if not has_test_batch(paths.data):
        # The demo bundle holds the images the shipped models get wrong; a new model needs a new one.
        lines.append(bundle_command(paths))
    return "\n".join(lines)


def evaluate_command(model: str, paths: Paths) -> str:
    # --flip-tta: one more pass, so the rebuilt metrics fill the overview's TTA row like the shipped ones.
    return f"python -m cifar.evaluate --checkpoint {paths.checkpoint(model)} {_data_flags(paths.data)} --flip-tta"


def bundle_command(paths: Paths) -> str:
    return f"python -m cifar.bundle --checkpoints {paths.checkpoints} {_data_flags(paths.data)}"


# ------------------------------------------------------------------------------------ checkpoints


def read_meta(model: str, paths: Paths) -> dict[str, Any]:
    """The checkpoint's metadata (cheap: the header only), or Unavailable with the rebuild command."""
    from cifar.checkpoints import CheckpointError, read_metadata

    path = paths.checkpoint(model)
    try:
        meta = read_metadata(path)
    except CheckpointError as e:
        what = f"{path} is missing." if not path.exists() else f"cannot be read: {e}"
        raise Unavailable(f"The {TITLES[model]} checkpoint {what}", rebuild_command(model, paths)) from None
    if meta.get("model") != model:
        raise Unavailable(f"{path} holds a {meta.get('model')!r} model, not {model!r}.", rebuild_command(model, paths))
    return meta


def load_checkpoint(model: str, paths: Paths):
    """(model in eval mode, metadata), or Unavailable naming the file and the rebuild command."""
    from cifar.checkpoints import CheckpointError, load_model

    import torch

    meta = read_meta(model, paths)
    try:
        net, meta = load_model(paths.checkpoint(model), expect=model)
    except CheckpointError as e:
        raise Unavailable(f"The {TITLES[model]} checkpoint is damaged: {e}", rebuild_command(model, paths, meta)) from None
    # channels_last, as cifar.runtime trains: oneDNN's CPU convolutions are faster in NHWC, and
    # cifar.explain's copies and inputs follow the model's format (IG, 50 steps, ResNet18: 1.1 s measured).
    return net.to(memory_format=torch.channels_last), meta


def tensor_shapes(model: str, paths: Paths) -> dict[str, tuple[int, ...]]:
    """Name → shape of every tensor in the checkpoint, from the safetensors header (no weights read)."""
    from safetensors import safe_open

    with safe_open(str(paths.checkpoint(model)), framework="np") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


# ------------------------------------------------------------------------------------ evaluation

_EVAL_KEYS = ("probs", "preds", "labels")


def load_eval(model: str, paths: Paths) -> dict[str, np.ndarray]:
    """probs (N, 10), preds (N,), labels (N,) of a checkpoint's test-set evaluation (logits dropped)."""
    path = paths.evaluation(model)
    if not path.is_file():
        raise Unavailable(f"The {TITLES[model]} test-set predictions {path} are missing.", evaluate_command(model, paths))
    try:
        with np.load(path) as z:
            ev = {k: z[k] for k in _EVAL_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise Unavailable(f"The {TITLES[model]} test-set predictions {path} cannot be read ({type(e).__name__}: {e}).",
                          evaluate_command(model, paths)) from None
    n = len(ev["labels"])
    if ev["probs"].ndim != 2 or ev["probs"].shape[0] != n or ev["preds"].shape != (n,):
        raise Unavailable(f"{path} has inconsistent shapes {[ev[k].shape for k in _EVAL_KEYS]}.", evaluate_command(model, paths))
    return ev


def load_summary(model: str, paths: Paths) -> dict[str, Any]:
    """metrics.summarize() of the evaluation: the .metrics.json, or recomputed when it is missing or stale."""
    from cifar import CLASSES

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
        raise Unavailable(f"The {TITLES[model]} metrics {paths.metrics(model)} are missing or stale, and recomputing "
                          f"them needs scikit-learn, which this installation lacks.", evaluate_command(model, paths)) from None
    return summarize(ev["labels"], ev["probs"], list(CLASSES))


# ------------------------------------------------------------------------------------ images


def load_test_images(paths: Paths) -> TestImages:
    """All 10,000 test images when the data folder holds the test batch, else the shipped demo bundle.

    Reads only test_batch (30 MB), not the 150 MB training set that load_cifar10 would also load.
    """
    from cifar.data import cifar_test_file, load_test_split

    try:
        images, labels, test_file = load_test_split(paths.data)
        return TestImages(images, labels, np.arange(len(labels)), full=True, source=str(test_file))
    except DataError:
        pass  # no dataset (a fresh clone) or a broken one: the demo bundle
    test_file = cifar_test_file(paths.data)
    path = paths.bundle
    if not path.is_file():
        raise Unavailable(f"No test images: the demo bundle {path} is missing and {test_file} does not exist.",
                          bundle_command(paths))
    try:
        return load_bundle(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise Unavailable(f"The demo bundle {path} cannot be read ({type(e).__name__}: {e}).", bundle_command(paths)) from None


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
        raise Unavailable(f"The tuning results {path} cannot be read ({type(e).__name__}: {e}).") from None


def tune_command(paths: Paths) -> str:
    """The grid of the report, written where the Training page looks."""
    return (f"python -m cifar.tune --model cnn --lr 0.001 0.003 --batch-size 32 64 128 --epochs 5 "
            f"{_data_flags(paths.data)} --csv {paths.tune_csv}")


# ------------------------------------------------------------------------------------ memory


def release_memory() -> bool:
    """Collect garbage, freeze what survives, and give freed heap back to the OS (glibc's malloc_trim).

    An Integrated Gradients pass on ResNet18 allocates batches of activations (peak +111 MB at
    explain.MAX_BATCH 16, +307 MB at 64); glibc keeps those pages after they are freed, so without
    the trim the server's RSS stays that much higher. gc.freeze() moves the long-lived objects of
    torch and captum (~470k, counted when torchvision was still imported) out of the collector's
    way, so Streamlit's gc.collect(2) after every script run takes milliseconds instead of ~0.35 s
    on a 2-core CPU. True if the trim ran.
    """
    import ctypes
    import gc

    gc.collect()
    gc.freeze()
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return False
