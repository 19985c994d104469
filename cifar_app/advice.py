"""Advice that fits the damage: the cheapest command that brings a missing or broken file back.

In order: restore a shipped file from git (seconds); recompute an evaluation or the demo bundle from
the weights and the data (minutes); retrain (hours), with the time it took where it was measured.
Pure functions on paths and metadata; `Paths` comes from cifar_app.store.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifar.checkpoints import default_run_dir, run_files
from cifar.data import cifar_test_file
from cifar.models import get_model

if TYPE_CHECKING:
    from cifar_app.store import Paths

REPO = Path(__file__).resolve().parents[1]

# Measured wall times of a retrain with each model's shipped recipe (the shipped checkpoints' metadata,
# and `python -m cifar.bench` for the CPU epoch of ResNet18: 30-37 min per 32px epoch × 75 epochs).
RETRAIN_TIME = {
    "cnn": "209 min on 2 CPU cores (the shipped 60-epoch run); not measured on a GPU",
    "resnet18": "5 min 20 s on one H200 GPU (the shipped run); about 40 h on 2 CPU cores (30-37 min per epoch "
                "× 75 epochs)",
}


@dataclass(frozen=True)
class Advice:
    """What to run (shell lines, empty when nothing helps) and what it restores or costs."""

    command: str
    note: str = ""


# ------------------------------------------------------------------------------ shipped files


@functools.lru_cache(maxsize=64)
def _tracked(path: str) -> str | None:
    """path relative to the repository when git tracks it there (a shipped file), else None."""
    try:
        rel = os.path.relpath(Path(path).resolve(), REPO)
    except ValueError:  # another drive (Windows)
        return None
    if rel.startswith(".."):
        return None
    try:
        done = subprocess.run(["git", "ls-files", "--error-unmatch", "--", rel], cwd=REPO, capture_output=True,
                              timeout=5)
    except (OSError, subprocess.SubprocessError):  # no git here: nothing to restore from
        return None
    return Path(rel).as_posix() if done.returncode == 0 else None


def restore(*paths: Path) -> Advice | None:
    """`git checkout -- FILE...` when every file is one the repository ships, else None.

    The paths are relative to where the app runs when that is inside the repository (the usual
    `streamlit run streamlit_app.py` from its root); from elsewhere, `git -C <repository>`.
    """
    rels = [_tracked(str(p)) for p in paths]
    if not rels or None in rels:
        return None
    cwd = Path.cwd().resolve()
    if cwd == REPO or REPO in cwd.parents:
        files = [os.path.relpath(REPO / r, cwd) for r in rels]
        git = "git checkout --"
    else:
        files, git = rels, f"git -C {shlex.quote(str(REPO))} checkout --"
    return Advice(f"{git} {' '.join(shlex.quote(Path(f).as_posix()) for f in files)}",
                  "restores the shipped file" + ("s" if len(rels) > 1 else "") + " from the repository")


# ------------------------------------------------------------------------------ commands


def has_test_batch(data_dir: Path) -> bool:
    """Whether the CIFAR-10 test batch is in the data folder (the app then uses all 10,000 images)."""
    return cifar_test_file(data_dir).is_file()


def data_flags(data_dir: Path) -> str:
    """--data-dir for this machine, with --download when the data is not there yet."""
    # Without the data here, the command must fetch it: --download puts it into that folder.
    return f"--data-dir {shlex.quote(str(data_dir))}" + ("" if has_test_batch(data_dir) else " --download")


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
    return default_run_dir(model, recipe).as_posix()


def portable_command(command: str, flags: str = "") -> str:
    """A recorded `python -m cifar.train ...` line, made to work on any machine.

    Keeps the model, recipe and every override (e.g. --epochs 60), but drops what belonged to the
    machine that ran it: its data and run folders (absolute paths there) and --resume (no resume
    state here); `flags` (this machine's --data-dir, maybe --download) go on the end.
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
    return f"{shlex.join(kept)} {flags}".strip()


def retrain(model: str, paths: Paths, meta: dict[str, Any] | None = None) -> Advice:
    """Shell lines that retrain `model` and copy the result where the app looks, with the time it takes.

    Uses the command stored in the checkpoint's metadata when it could be read (with this machine's
    data folder and the default run folder), else the model's shipped recipe.
    """
    if meta and meta.get("command"):
        train = portable_command(meta["command"], data_flags(paths.data))
        recipe = meta.get("recipe") or get_model(model).shipped_recipe
    else:
        spec = get_model(model)
        recipe = spec.shipped_recipe
        extra = f" {spec.shipped_flags}" if spec.shipped_flags else ""
        train = f"python -m cifar.train --model {model} --recipe {recipe}{extra} {data_flags(paths.data)}"
    out = run_files(out_dir_of(train, model, recipe), model)
    lines = [train, f"cp {' '.join(p.as_posix() for p in out.all())} {paths.checkpoints.as_posix()}/"]
    if not has_test_batch(paths.data):
        # The demo bundle holds the images the shipped models get wrong; a new model needs a new one.
        lines.append(bundle(paths).command)
    return Advice("\n".join(lines), f"retrains from scratch: {RETRAIN_TIME.get(model, 'time not measured')}")


def evaluate(model: str, paths: Paths) -> Advice:
    """Recompute a checkpoint's test-set predictions and metrics from its weights and the data."""
    # --flip-tta: one more pass, so the rebuilt metrics fill the overview's TTA row like the shipped ones.
    return Advice(f"python -m cifar.evaluate --checkpoint {paths.checkpoint(model).as_posix()} "
                  f"{data_flags(paths.data)} --flip-tta",
                  "recomputes the predictions from the weights: a few minutes on a CPU")


def bundle(paths: Paths) -> Advice:
    """Rebuild the demo images from the data and the evaluations beside the checkpoints."""
    return Advice(f"python -m cifar.bundle --checkpoints {paths.checkpoints.as_posix()} {data_flags(paths.data)}",
                  "rebuilds the demo images from the dataset")


def tune(paths: Paths) -> Advice:
    """The report's lr × batch grid, written where the Training page looks."""
    return Advice(f"python -m cifar.tune --model cnn --lr 0.001 0.003 --batch-size 32 64 128 --epochs 5 "
                  f"{data_flags(paths.data)} --csv {paths.tune_csv.as_posix()}",
                  "six 5-epoch trials, 13-16 min each on 2 CPU cores (the shipped grid's seconds column; "
                  "one that shared the machine with another job took 2 h)")


# ------------------------------------------------------------------------------ what to say for which file


def for_checkpoint(model: str, paths: Paths, meta: dict[str, Any] | None = None) -> Advice:
    """A missing or damaged checkpoint: restore the shipped file, else retrain."""
    return restore(paths.checkpoint(model)) or retrain(model, paths, meta)


def for_evaluation(model: str, paths: Paths) -> Advice:
    """Missing or unreadable predictions: restore the shipped files, else the evaluate command."""
    return restore(paths.evaluation(model), paths.metrics(model)) or evaluate(model, paths)


def for_bundle(paths: Paths) -> Advice:
    """A missing or unreadable demo bundle: restore the shipped one, else rebuild it."""
    return restore(paths.bundle) or bundle(paths)


def for_tuning(paths: Paths) -> Advice:
    """A broken tuning CSV: restore the shipped one, else rerun the grid."""
    return restore(paths.tune_csv) or tune(paths)
