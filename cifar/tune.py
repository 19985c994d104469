"""Grid search over config fields, every trial through the one training loop; `python -m cifar.tune`.

    python -m cifar.tune --model cnn --lr 0.001 0.003 --batch-size 32 64 128 --epochs 5 --data-dir ../shared/cifar10

Each trial is `cifar.train.fit` in its own run folder under --out-dir (named by the varied values and
a hash of the full config, so two grids never share a folder). A row per finished trial is appended
to the CSV at once, so an interrupted grid keeps its finished trials; `--resume` skips them and
continues an interrupted trial after its last finished epoch.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import re
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

from tqdm.auto import tqdm

from cifar.checkpoints import CheckpointError, default_run_dir, run_files
from cifar.config import TrainConfig, add_config_arguments, make_config
from cifar.data import DataError, Splits, load_cifar10, make_splits
from cifar.models import ModelError
from cifar.train import RESUME_FILE, TrainingError, fit

# After the varied fields. seconds: the trial's training wall time (epochs and their validation) from
# fit's metadata; error: why a trial failed (a diverged loss), empty otherwise.
RESULT_COLUMNS = ("best_val_acc", "best_epoch", "epochs_run", "seconds", "test_acc", "error", "run_dir", "config")
_FIELDS = {f.name: f for f in fields(TrainConfig)}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


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


def append_row(path: Path, columns: list[str], row: dict[str, Any]) -> None:
    """Append one row (header first if the file is new), flushed, so a crash keeps it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerow(row)


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
        description="Grid search: one cifar.train run per combination of the listed values. Every other "
                    "config flag applies to all trials (on top of the recipe).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--lr", type=float, nargs="+", default=None, help="learning rates to try")
    p.add_argument("--batch-size", type=int, nargs="+", default=None, help="batch sizes to try")
    p.add_argument("--set", dest="grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="values to try for any config field, e.g. --set weight_decay=0,5e-4 (repeatable)")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (else $CIFAR10_DIR, else ./data)")
    p.add_argument("--download", action="store_true", help="download the official archive if the data folder lacks it")
    p.add_argument("--out-dir", default=None, help="one run folder per trial goes here (default: runs/tune-<model>)")
    p.add_argument("--csv", default=None, help="results, one row per trial (default: <out-dir>/tune.csv)")
    p.add_argument("--resume", action="store_true",
                   help="skip trials already in the CSV; continue an interrupted trial after its last finished epoch")
    p.add_argument("--verbose", action="store_true", help="print every epoch line (they always go to <run-dir>/train.log)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (summary lines still print)")
    add_config_arguments(p, skip=("lr", "batch_size"))
    return p


def plan(args: argparse.Namespace) -> list[tuple[dict[str, Any], TrainConfig]]:
    """(varied values, config) per trial, in grid order, duplicates dropped; checks every config up front."""
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
    trials, seen = [], set()
    for trial in expand_grid(axes):
        cfg = trial_config(fixed, trial)
        if config_key(cfg) not in seen:
            seen.add(config_key(cfg))
            trials.append((trial, cfg))
    return trials


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        trials = plan(args)
        models = "+".join(dict.fromkeys(cfg.model for _, cfg in trials))
        out_dir = Path(args.out_dir) if args.out_dir else default_run_dir("tune", models)
        csv_path = Path(args.csv) if args.csv else out_dir / "tune.csv"
        columns = list(dict.fromkeys(k for trial, _ in trials for k in trial)) + list(RESULT_COLUMNS)
        header, old_rows = read_rows(csv_path)
        started = sorted(out_dir.glob(f"*/{RESUME_FILE}"))
        if (old_rows or started) and not args.resume:
            raise TuneError(f"{csv_path if old_rows else started[0]} exists from an earlier grid: add --resume to skip "
                            f"finished trials and continue an interrupted one, or pick another --out-dir/--csv")
        if header and header != columns:
            raise TuneError(f"{csv_path} has columns {', '.join(header)}, but this grid writes "
                            f"{', '.join(columns)}; pick another --csv")
        done = {config_key(json.loads(r["config"])): r for r in old_rows}

        data = load_cifar10(args.data_dir, download=args.download)
        print(f"{len(trials)} trials ({len(trials) - sum(config_key(c) in done for _, c in trials)} to run) "
              f"of {models}, data {data.source}; results → {csv_path}")
        rows: list[dict[str, str]] = []
        split_key, splits = None, None
        bar = tqdm(trials, desc="tune", unit="trial", disable=args.quiet)
        for i, (trial, cfg) in enumerate(bar, 1):
            head = f"[{i}/{len(trials)}] {describe(trial)}"
            if config_key(cfg) in done:
                rows.append(done[config_key(cfg)])
                tqdm.write(f"{head}: already in {csv_path.name}, skipped")
                continue
            # The split depends on these three fields only; rebuild it only when they change.
            key = (cfg.split_seed, cfg.val_size, cfg.limit_train)
            if key != split_key:
                split_key, splits = key, None  # free the old copy before making the new one
                splits = make_splits(data, cfg.val_size, cfg.split_seed, cfg.limit_train or None)
            run_dir = out_dir / trial_name(trial, cfg)
            row = run_trial(trial, cfg, splits, run_dir, resume=args.resume, progress=not args.quiet,
                            verbose=args.verbose)
            append_row(csv_path, columns, row)
            rows.append({k: str(v) for k, v in row.items()})
            if row["error"]:
                tqdm.write(f"{head}: failed: {row['error']}")
            else:
                tqdm.write(f"{head}: val acc {row['best_val_acc']:.4f} (best epoch {row['best_epoch']}/"
                           f"{row['epochs_run']}), test acc {row['test_acc']:.4f}, {row['seconds']:.0f}s")
        bar.close()
    except (DataError, CheckpointError, ModelError, TrainingError, TuneError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are in the CSV; rerun the same command with --resume to skip them "
              "and continue the interrupted one", file=sys.stderr)
        return 130
    print_best(rows, csv_path, args.data_dir)
    return 0


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
