"""Hyperparameter search on Optuna, every trial through the one training loop; `python -m cifar.tune`.

    python -m cifar.tune --model cnn --epochs 5 --data-dir ../shared/cifar10              # the report's grid
    python -m cifar.tune --model cnn --lr 0.001 0.003 --batch-size 32 64 128 --workers 2 ...
    python -m cifar.tune --sampler tpe --n-trials 20 --lr 1e-4 1e-2 ...                    # a TPE search
    python -m cifar.tune --storage postgresql://user@db/optuna --resume ...                # a cluster's worker

A grid runs on Optuna's GridSampler (by default the report's lr × batch grid), a search on its TPE
sampler. The study lives in `--storage`: by default a journal file in --out-dir, which `--workers N`
processes on this machine, or workers on machines sharing that folder, use together; or any
SQLAlchemy URL (PostgreSQL for a cluster). Each trial is `cifar.train.fit` in its own run folder under
--out-dir (named by its values and a hash of the full config). cifar.study says how no trial runs
twice and how a killed worker's trial is retried. After every trial the CSV the app reads is
rewritten from the study (one row per grid point, in grid order), so an interrupted study keeps
its finished trials; `--resume` joins the study and runs what is left.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

import optuna
from tqdm.auto import tqdm

from cifar.checkpoints import CheckpointError, default_run_dir, run_files
from cifar.config import TrainConfig, add_config_arguments, make_config
from cifar.data import DataError, Splits, load_cifar10, make_splits
from cifar.models import ModelError
from cifar.study import JOURNAL_FILE, POINT, ROW, Space, StudyError, objective, open_storage, open_study, progress, work
from cifar.train import TrainingError, fit

# After the varied fields. seconds: the trial's training wall time (epochs and their validation) from
# fit's metadata; error: why a trial failed (a diverged loss), empty otherwise.
RESULT_COLUMNS = ("best_val_acc", "best_epoch", "epochs_run", "seconds", "test_acc", "error", "run_dir", "config")
_FIELDS = {f.name: f for f in fields(TrainConfig)}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
# The report's grid for the CustomCNN (Adam): what a grid tries when no values are given.
REPORT_GRID = {"lr": [0.001, 0.003], "batch_size": [32, 64, 128]}
# A search's range when none is given: lr log-uniform over two decades around Adam's default.
DEFAULT_SEARCH = {"lr": [1e-4, 1e-2], "batch_size": [32, 64, 128]}


class TuneError(RuntimeError):
    """The grid cannot run as asked (results of another grid in the way); the message says what to do."""


def parse_value(name: str, text: str) -> Any:
    """One --set value as the config field's type, checked against its choices."""
    kind = get_type_hints(TrainConfig)[name]
    text = text.strip()
    try:
        if kind is bool:
            if text.lower() not in _TRUE | _FALSE:
                raise ValueError
            value: Any = text.lower() in _TRUE
        else:
            value = kind(text)
    except ValueError:
        raise ValueError(f"--set {name}: {text!r} is not a valid {kind.__name__}") from None
    choices = _FIELDS[name].metadata["choices"]
    if choices and value not in choices:
        raise ValueError(f"--set {name}: {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def parse_set(specs: list[str]) -> dict[str, list[Any]]:
    """["FIELD=V1,V2", ...] → {field: [typed values]}, in the order given."""
    axes: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ValueError(f"--set {spec!r}: expected FIELD=V1,V2,...")
        if name not in _FIELDS:
            raise ValueError(f"--set {spec!r}: unknown config field {name!r}; valid: {', '.join(_FIELDS)}")
        if name in axes:
            raise ValueError(f"--set {name} is given twice; list all its values in one --set")
        axes[name] = [parse_value(name, v) for v in values.split(",")]
    return axes


def expand_grid(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the axes, first axis slowest; no axes → one trial with no overrides."""
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def trial_config(fixed: dict[str, Any], trial: dict[str, Any]) -> TrainConfig:
    """The recipe preset of the trial's model, then the flags given, then the trial's values."""
    overrides = {**fixed, **trial}
    return make_config(overrides.pop("model", "cnn"), overrides.pop("recipe", "paper"), **overrides)


def config_key(config: TrainConfig | dict[str, Any]) -> str:
    """The full config as canonical JSON: how a CSV row is matched to a trial."""
    d = config.to_dict() if isinstance(config, TrainConfig) else config
    return json.dumps(d, sort_keys=True)


def trial_name(trial: dict[str, Any], cfg: TrainConfig) -> str:
    """A folder name: the varied values, then a hash of the whole config (fixed flags differ between grids)."""
    digest = hashlib.sha1(config_key(cfg).encode()).hexdigest()[:8]
    parts = [f"{k}={v}" for k, v in trial.items()] or ["base"]
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(parts)) + "-" + digest


def train_flags(cfg: TrainConfig) -> list[str]:
    """The `python -m cifar.train` flags that rebuild this config from its recipe."""
    preset = make_config(cfg.model, cfg.recipe).to_dict()
    flags = ["--model", cfg.model, "--recipe", cfg.recipe]
    for name, value in cfg.to_dict().items():
        if name in ("model", "recipe") or preset[name] == value:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, str(value)]
    return flags


def best_row(rows: list[dict[str, str]]) -> dict[str, str] | None:
    """The row with the highest val accuracy (the first on ties); failed rows never win."""
    scored = [r for r in rows if r.get("best_val_acc") not in (None, "")]
    return max(scored, key=lambda r: float(r["best_val_acc"]), default=None)


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a results CSV; ([], []) if it does not exist yet."""
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_rows(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Rewrite the CSV atomically (a temporary file, then a rename): several workers export it, and a
    reader (the app) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def result_row(trial: dict[str, Any], cfg: TrainConfig, run_dir: Path, meta: dict[str, Any] | None,
               error: str = "") -> dict[str, Any]:
    """One CSV row: the varied values, the results of fit's metadata (or the error), the full config."""
    meta = meta or {}
    row = dict(trial)
    row.update(best_val_acc=meta.get("val_acc", ""), best_epoch=meta.get("best_epoch", ""),
               epochs_run=meta.get("epochs_run", ""), seconds=meta.get("wall_time_s", ""),
               test_acc=meta.get("test_acc", ""), error=error, run_dir=str(run_dir), config=config_key(cfg))
    return row


def describe(trial: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in trial.items()) or "base config"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cifar.tune",
        description="Hyperparameter search on Optuna: a grid (one cifar.train run per combination of the listed "
                    "values; by default the report's lr x batch grid) or a TPE search. Every other config flag "
                    "applies to all trials (on top of the recipe).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--lr", type=float, nargs="+", default=None,
                   help="learning rates to try (grid); for tpe, the smallest and largest bound a log-uniform range "
                        f"(default: the report's {REPORT_GRID['lr']} for a grid, {DEFAULT_SEARCH['lr']} for tpe)")
    p.add_argument("--batch-size", type=int, nargs="+", default=None,
                   help=f"batch sizes to try (default, with no other values given: {REPORT_GRID['batch_size']})")
    p.add_argument("--set", dest="grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="values to try for any config field, e.g. --set weight_decay=0,5e-4 (repeatable)")
    p.add_argument("--sampler", choices=("grid", "tpe"), default="grid",
                   help="grid: every combination once (Optuna's GridSampler); tpe: --n-trials trials chosen by "
                        "Optuna's TPE sampler among the values (lr: a log range)")
    p.add_argument("--n-trials", type=int, default=20, help="tpe: trials in all, over all workers")
    p.add_argument("--storage", default=None,
                   help=f"the Optuna study's storage: a journal file path (default: <out-dir>/{JOURNAL_FILE}; "
                        "workers on machines sharing its folder can join), or an SQLAlchemy URL such as "
                        "postgresql://user:password@host/db for a cluster")
    p.add_argument("--study-name", default=None, help="default: cifar-tune-<model>-<hash of the grid and config>")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes on this machine sharing the study (each gets cores/workers threads)")
    p.add_argument("--heartbeat-interval", type=int, default=30,
                   help="seconds between a running trial's heartbeats")
    p.add_argument("--grace-period", type=int, default=90,
                   help="seconds without a heartbeat after which a trial's worker counts as dead: the trial is "
                        "failed and retried")
    p.add_argument("--max-retry", type=int, default=3, help="retries of a trial whose worker died or crashed")
    p.add_argument("--worker-id", type=int, default=0, help=argparse.SUPPRESS)  # set by --workers for its children
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (else $CIFAR10_DIR, else ./data)")
    p.add_argument("--download", action="store_true", help="download the official archive if the data folder lacks it")
    p.add_argument("--out-dir", default=None, help="one run folder per trial goes here (default: runs/tune-<model>)")
    p.add_argument("--csv", default=None, help="results, one row per trial (default: <out-dir>/tune.csv)")
    p.add_argument("--resume", action="store_true",
                   help="join the study in --storage (creating it if absent): skip finished trials, continue an "
                        "interrupted one after its last finished epoch; every worker of a cluster starts with it")
    p.add_argument("--verbose", action="store_true", help="print every epoch line (they always go to <run-dir>/train.log)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (summary lines still print)")
    add_config_arguments(p, skip=("lr", "batch_size"))
    return p


def axes_and_fixed(args: argparse.Namespace) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """The varied fields with their values (the sampler's default when none is given), and the fixed flags."""
    axes = parse_set(args.grid)
    for name, values in (("lr", args.lr), ("batch_size", args.batch_size)):
        if values is not None:
            if name in axes:
                raise ValueError(f"--{name.replace('_', '-')} and --set {name} both given; use one")
            axes[name] = values
    fixed = {k: v for k, v in vars(args).items() if k in _FIELDS and k not in ("lr", "batch_size") and v is not None}
    clash = set(fixed) & set(axes)
    if clash:
        name = sorted(clash)[0]
        raise ValueError(f"--{name.replace('_', '-')} and --set {name} both given; use one")
    if not axes:
        axes = {k: list(v) for k, v in (REPORT_GRID if args.sampler == "grid" else DEFAULT_SEARCH).items()}
    return axes, fixed


def plan(args: argparse.Namespace) -> list[tuple[dict[str, Any], TrainConfig]]:
    """(varied values, config) per grid point, in grid order, duplicates dropped; checks every config up front."""
    axes, fixed = axes_and_fixed(args)
    trials, seen = [], set()
    for trial in expand_grid(axes):
        cfg = trial_config(fixed, trial)
        if config_key(cfg) not in seen:
            seen.add(config_key(cfg))
            trials.append((trial, cfg))
    return trials


def make_space(args: argparse.Namespace) -> tuple[Space, dict[str, Any]]:
    """What the study tries, and the flags every trial shares; every grid config is checked up front."""
    axes, fixed = axes_and_fixed(args)
    if args.sampler == "grid":
        points = [trial for trial, _ in plan(args)]
        # GridSampler wants each axis's values once; plan() already dropped combinations that repeat.
        return Space("grid", {k: list(dict.fromkeys(v)) for k, v in axes.items()}, points=points), fixed
    if args.n_trials < 1:
        raise ValueError(f"--n-trials must be at least 1, not {args.n_trials}")
    log_ranges = ()
    if len(set(axes.get("lr", []))) >= 2:
        if min(axes["lr"]) <= 0:
            raise ValueError("--lr: a search's range needs positive bounds")
        log_ranges = ("lr",)
    for values in itertools.product(*(sorted(set(v))[:1] for v in axes.values())):
        trial_config(fixed, dict(zip(axes, values)))  # the flags and each axis's type check out
    return Space("tpe", {k: list(dict.fromkeys(v)) for k, v in axes.items()}, n_trials=args.n_trials,
                 log_ranges=log_ranges), fixed


def study_name(space: Space, fixed: dict[str, Any], models: str) -> str:
    """cifar-tune-<model>-<hash>: the same grid and flags always find the same study, another grid another."""
    base = config_key(trial_config(fixed, {}))
    what = json.dumps([space.sampler, space.axes, space.points, space.n_trials, list(space.log_ranges), base],
                      sort_keys=True, default=str)
    return f"cifar-tune-{models}-{hashlib.sha1(what.encode()).hexdigest()[:8]}"


def study_rows(study, space: Space) -> list[dict[str, Any]]:
    """The CSV rows of the trials with a result: one per grid point, in grid order (a search: by trial)."""
    return [t.user_attrs[ROW] for t in progress(study, space).results]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    say = (lambda msg: tqdm.write(f"[worker {args.worker_id}] {msg}")) if args.worker_id else tqdm.write
    try:
        space, fixed = make_space(args)
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1, not {args.workers}")
        models = trial_config(fixed, {}).model
        out_dir = Path(args.out_dir) if args.out_dir else default_run_dir("tune", models)
        csv_path = Path(args.csv) if args.csv else out_dir / "tune.csv"
        storage_url = args.storage or str(out_dir / JOURNAL_FILE)
        name = args.study_name or study_name(space, fixed, models)
        columns = list(space.axes) + list(RESULT_COLUMNS)
        header, old_rows = read_rows(csv_path)
        if header and header != columns:
            raise TuneError(f"{csv_path} has columns {', '.join(header)}, but this grid writes "
                            f"{', '.join(columns)}; pick another --csv")
        data = load_cifar10(args.data_dir, download=args.download)  # a missing dataset fails before any study
        storage = open_storage(storage_url, args.heartbeat_interval, args.grace_period, args.max_retry)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study, created = open_study(storage, name, space, seed=fixed.get("seed", 42) + args.worker_id)
        if not args.resume and (not created or old_rows):
            raise TuneError(f"{csv_path if old_rows else storage_url} holds an earlier run of this study ({name}): add "
                            f"--resume to skip finished trials and continue an interrupted one, or pick another "
                            f"--out-dir/--csv")
        def export() -> None:
            write_rows(csv_path, columns, study_rows(study, space))

        if not args.worker_id:
            done = progress(study, space).results
            print(f"{space.size} trials ({space.size - len(done)} to run) of {models} on Optuna ({space.sampler}), "
                  f"study {name} in {storage_url}, {args.workers} worker(s); data {data.source}; results → {csv_path}")
            if space.sampler == "grid":
                finished = {t.user_attrs[POINT] for t in done}
                for i, point in enumerate(space.points):
                    if i in finished:
                        print(f"[{i + 1}/{space.size}] {describe(point)}: already done, skipped")
        if args.workers > 1:
            del data  # the workers load their own
            rc = run_workers(args, argv, storage_url, name, study, space)
        else:
            splits_of: dict[tuple, Splits] = {}

            def run(trial, values: dict[str, Any]) -> dict[str, Any]:
                cfg = trial_config(fixed, values)
                # The split depends on these three fields only; keep one copy at a time.
                key = (cfg.split_seed, cfg.val_size, cfg.limit_train)
                if key not in splits_of:
                    splits_of.clear()
                    splits_of[key] = make_splits(data, cfg.val_size, cfg.split_seed, cfg.limit_train or None)
                index = trial.user_attrs.get(POINT, trial.number)
                head = f"[{index + 1}/{space.size}] {describe(values)}"
                row = run_trial(values, cfg, splits_of[key], out_dir / trial_name(values, cfg), resume=True,
                                progress=not args.quiet, verbose=args.verbose)
                if row["error"]:
                    say(f"{head}: failed: {row['error']}")
                else:
                    say(f"{head}: val acc {row['best_val_acc']:.4f} (best epoch {row['best_epoch']}/"
                        f"{row['epochs_run']}), test acc {row['test_acc']:.4f}, {row['seconds']:.0f}s")
                return row

            work(study, space, objective(study, space, run, args.max_retry), after_trial=export, say=say)
            rc = 0
        export()
    except (DataError, CheckpointError, ModelError, TrainingError, TuneError, StudyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are in the CSV; rerun the same command with --resume to skip them "
              "and continue the interrupted one", file=sys.stderr)
        return 130
    if args.worker_id:
        return rc
    now = progress(study, space)
    for i in now.gave_up:
        print(f"grid point {i + 1} ({describe(space.points[i])}) crashed on every try (--max-retry {args.max_retry}); "
              f"see train.log in its run folder under {out_dir}", file=sys.stderr)
    print_best([{k: str(v) for k, v in row.items()} for row in study_rows(study, space)], csv_path, args.data_dir)
    return rc or (1 if now.gave_up or not now.done else 0)


def run_workers(args: argparse.Namespace, argv: list[str], storage_url: str, name: str, study, space: Space) -> int:
    """Start --workers copies of this command as workers of the study; show the study's progress until
    they exit. 0 when all exited cleanly."""
    env = dict(os.environ)
    # Each worker its share of the cores: oneDNN's threads fight over the same cores otherwise.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.workers)))
    base = [sys.executable, "-m", "cifar.tune", *argv, "--workers", "1", "--resume", "--storage", storage_url,
            "--study-name", name, "--quiet"]
    procs = [subprocess.Popen([*base, "--worker-id", str(k)], env=env) for k in range(1, args.workers + 1)]
    bar = tqdm(total=space.size, desc="tune", unit="trial", disable=args.quiet)
    try:
        while any(p.poll() is None for p in procs):
            bar.n = len(progress(study, space).results)
            bar.refresh()
            time.sleep(1.0)
    except KeyboardInterrupt:  # the workers got the same Ctrl-C; they queue their trials again and stop
        for p in procs:
            p.wait()
        raise
    finally:
        bar.close()
    failed = [(k, p.returncode) for k, p in enumerate(procs, 1) if p.returncode != 0]
    for k, code in failed:
        print(f"worker {k} exited with code {code}", file=sys.stderr)
    return 1 if failed else 0


def run_trial(trial: dict[str, Any], cfg: TrainConfig, splits: Splits, run_dir: Path, *, resume: bool,
              progress: bool, verbose: bool) -> dict[str, Any]:
    """fit() one trial, its epoch lines into <run_dir>/train.log; a diverged trial becomes a row with its error."""
    run_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m cifar.train " + shlex.join([*train_flags(cfg), "--out-dir", str(run_dir)])
    with open(run_dir / "train.log", "a") as f:
        def log(msg: str) -> None:
            f.write(msg + "\n")
            f.flush()
            if verbose:
                tqdm.write(msg)

        try:
            meta = fit(cfg, splits, run_dir, resume=resume, command=command, progress=progress, log=log)
        except TrainingError as e:
            # A diverged lr is a result of the grid, not a reason to stop it.
            log(f"error: {e}")
            return result_row(trial, cfg, run_dir, None, error=str(e))
    return result_row(trial, cfg, run_dir, meta)


def print_best(rows: list[dict[str, str]], csv_path: Path, data_dir: str | None) -> None:
    """The best trial by val accuracy, how to retrain it, and where the CSV is."""
    best = best_row(rows)
    if best is None:
        print(f"no trial finished; results in {csv_path}")
        return
    cfg = TrainConfig.from_dict(json.loads(best["config"]))
    varied = [k for k in best if k not in RESULT_COLUMNS]
    print(f"best of {len(rows)} trials by val acc: {' '.join(f'{k}={best[k]}' for k in varied) or 'base config'}: "
          f"val acc {float(best['best_val_acc']):.4f} at epoch {best['best_epoch']}, "
          f"test acc {float(best['test_acc']):.4f}")
    data = ["--data-dir", data_dir] if data_dir else []
    print(f"  config: {best['config']}")
    print(f"  checkpoint: {run_files(best['run_dir'], cfg.model).weights}")
    print(f"  reproduce: python -m cifar.train {shlex.join([*train_flags(cfg), *data])}")
    print(f"results: {csv_path}")


__all__ = ["parse_set", "parse_value", "expand_grid", "trial_config", "best_row", "train_flags", "main"]

if __name__ == "__main__":
    sys.exit(main())
