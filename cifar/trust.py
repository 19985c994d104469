"""Can a prediction be trusted? Temperature scaling and out-of-distribution detectors for a checkpoint.

`python -m cifar.trust --checkpoint checkpoints/cnn.safetensors --data-dir ../shared/cifar10` writes,
beside the checkpoint (cifar.checkpoints.RunFiles; the .metrics.json and .eval.npz stay untouched):

- `<model>.trust.json`: the temperature fitted on the checkpoint's own validation split (recorded in
  its metadata: 5,000 images of the training batches, seed 42), calibration metrics on the test set
  before and after it, each OOD detector's threshold at 95% TPR on the test set, and AUROC / FPR@95
  per detector per offline OOD set (cifar.ood_sets), with the command, hardware and data source;
- `<model>.mahalanobis.npz`: class means and whitening matrix of the penultimate features of the
  45,000 training images (cifar.ood).

Scoring (validation, test, OOD sets) runs in fp32 by default, as the app does (--precision auto: bf16
where native); the training features run in the runtime's fast precision (bf16 autocast on a CPU with native bf16), cached in --cache-dir so a rerun
skips them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from cifar import calibration, ood, ood_sets
from cifar.checkpoints import CheckpointError, RunFiles, atomic_write, load_model
from cifar.data import DataError, cifar_test_file, describe_source, load_cifar10, make_splits, normalize
from cifar.runtime import Runtime

OOD_PER_SET = 1000  # images per OOD set
OOD_SEED = 0


def _features(model, images: torch.Tensor, rt: Runtime, desc: str, progress: bool, batch_size: int):
    """(logits, features) of uint8 NCHW images under runtime rt."""
    n_batches = (len(images) + batch_size - 1) // batch_size

    def bar(it):
        return tqdm(it, total=n_batches, desc=desc, leave=False, disable=not progress)

    return ood.logits_and_features(model, images, batch_size=batch_size,
                                   prepare=lambda x: rt.prepare_input(normalize(x)), autocast=rt.autocast,
                                   progress=bar)


def _write(path: str, write) -> None:
    # A file object, not a path: numpy would add ".npy"/".npz" to atomic_write's temporary name.
    with open(path, "wb") as f:
        write(f)


def _train_features(model, meta, splits, rt: Runtime, cache_dir: Path | None, checkpoint: Path, progress: bool,
                    batch_size: int) -> tuple[np.ndarray, float, bool]:
    """Penultimate features of the training split: (features, seconds, from the cache)."""
    stat = checkpoint.stat()
    cache = None
    if cache_dir is not None:
        cache = cache_dir / f"{meta['model']}-{stat.st_size}-{stat.st_mtime_ns}-{rt.precision}-train-features.npy"
        if cache.is_file():
            return np.load(cache), 0.0, True
    start = time.perf_counter()
    _, feats = _features(model, splits.train_x, rt, "train features", progress, batch_size)
    seconds = time.perf_counter() - start
    if cache is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, lambda tmp: _write(tmp, lambda f: np.save(f, feats)))
    return feats, seconds, False


def run_trust(checkpoint: str | Path, data_dir: str | None = None, *, device: str = "auto", precision: str = "fp32",
              n_ood: int = OOD_PER_SET,
              seed: int = OOD_SEED, cache_dir: str | Path | None = None, progress: bool = True,
              batch_size: int = 500, command: str = "", log=print) -> dict:
    """Fit the temperature and the Mahalanobis statistics, measure every detector; write both files."""
    checkpoint = Path(checkpoint)
    t0 = time.perf_counter()
    model, meta = load_model(checkpoint)
    name = meta["model"]
    split = meta.get("data") or {}
    split_seed, val_size = int(split.get("split_seed", 42)), int(split.get("val_size", 5000))
    score_rt = Runtime.decide(device, precision)  # fp32: what the app computes in
    fast_rt = Runtime.decide(device, "auto")
    model = score_rt.prepare_model(model)
    data = load_cifar10(data_dir)
    splits = make_splits(data, val_size, split_seed)
    classes = list(meta.get("classes") or data.classes)
    seconds: dict[str, float] = {}
    cache = Path(cache_dir) if cache_dir else None
    stat = checkpoint.stat()

    def scored(what: str, images: torch.Tensor, desc: str) -> tuple[np.ndarray, np.ndarray]:
        """fp32 (logits, features) of images, kept in the cache folder: a rerun (new detectors, new
        table) then costs no forward pass."""
        path = cache / f"{name}-{stat.st_size}-{stat.st_mtime_ns}-{score_rt.precision}-{what}.npz" if cache else None
        if path is not None and path.is_file():
            with np.load(path) as z:
                if len(z["logits"]) == len(images):
                    return z["logits"], z["features"]
        logits, feats = _features(model, images, score_rt, desc, progress, batch_size)
        if path is not None:
            cache.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: _write(tmp, lambda f: np.savez(f, logits=logits, features=feats)))
        return logits, feats

    # 1. Temperature on the validation split.
    start = time.perf_counter()
    val_logits, _ = scored("validation", splits.val_x, "validation")
    seconds["validation_logits"] = time.perf_counter() - start
    val_y = splits.val_y.numpy()
    fit = calibration.fit_temperature(val_logits, val_y)
    t = fit["temperature"]
    log(f"{name}: T = {t:.4f} on {len(val_y):,} validation images (NLL {fit['nll_before']:.4f} → "
        f"{fit['nll_after']:.4f}, fitted in {fit['seconds']:.2f} s)")

    # 2. Test set: calibration before and after, and the in-distribution scores.
    start = time.perf_counter()
    test_logits, test_feats = scored("test", splits.test_x, "test")
    seconds["test"] = time.perf_counter() - start
    test_y = splits.test_y.numpy()
    stored = RunFiles.beside(checkpoint).evaluation
    calib_logits, calib_source = test_logits, f"this run ({score_rt.precision})"
    if stored.is_file():  # the app shows the stored predictions: measure calibration on those
        with np.load(stored) as z:
            if z["logits"].shape == test_logits.shape and np.array_equal(z["labels"], splits.test_y.numpy()):
                diff = float(np.abs(z["logits"] - test_logits).max())
                log(f"{name}: test logits differ from {stored.name} by at most {diff:.2e}")
                calib_logits, calib_source = z["logits"], f"{stored.name} (the stored predictions the app shows)"
    before = calibration.softmax(calib_logits)
    after = calibration.softmax(calib_logits / t)
    calib = {
        "n_bins": calibration.N_BINS,
        "test": {"n": int(len(test_y)), "logits": calib_source, "before": calibration.calibration_summary(test_y, before),
                 "after": calibration.calibration_summary(test_y, after)},
        "validation": {"n": int(len(val_y)),
                       "before": calibration.calibration_summary(val_y, calibration.softmax(val_logits)),
                       "after": calibration.calibration_summary(val_y, calibration.softmax(val_logits / t))},
    }

    # 3. Mahalanobis statistics on the training features.
    train_feats, seconds["train_features"], cached = _train_features(
        model, meta, splits, fast_rt, Path(cache_dir) if cache_dir else None, checkpoint, progress, batch_size)
    start = time.perf_counter()
    stats = ood.fit_mahalanobis(train_feats, splits.train_y.numpy(), len(classes), layer=ood.feature_layer(model))
    seconds["mahalanobis_fit"] = time.perf_counter() - start

    # 4. Thresholds at 95% TPR on the test set, then every OOD set.
    in_scores = ood.scores(test_logits, test_feats, stats)
    qs = {k: ood.quantiles(v) for k, v in in_scores.items()}
    in_scores[ood.COMBINED.name] = ood.combined(in_scores, qs)
    thresholds = {k: ood.threshold_at_tpr(v) for k, v in in_scores.items()}
    start = time.perf_counter()
    sets = ood_sets.make_sets(data.test_images, n_ood, seed)
    seconds["ood_sets_made"] = time.perf_counter() - start
    table = {}
    start = time.perf_counter()
    for set_name, images in sets.items():
        x = torch.from_numpy(images).permute(0, 3, 1, 2)
        logits, feats = scored(f"ood-{set_name}-{n_ood}-{seed}", x, set_name)
        out_scores = ood.scores(logits, feats, stats)
        out_scores[ood.COMBINED.name] = ood.combined(out_scores, qs)
        table[set_name] = {"title": ood_sets.SETS[set_name][0], "n": int(len(images)), **{
            k: {"auroc": ood.auroc(in_scores[k], out_scores[k]), "fpr95": ood.fpr_at_tpr(in_scores[k], out_scores[k]),
                "flagged": float(np.mean(out_scores[k] < thresholds[k]))}
            for k in in_scores}}  # the three detectors and the combined one
    seconds["ood_scores"] = time.perf_counter() - start

    files = RunFiles.beside(checkpoint)
    atomic_write(files.mahalanobis, lambda tmp: _write(tmp, lambda f: ood.save_stats(stats, f)))
    seconds["total"] = time.perf_counter() - t0
    result = {
        "model": name,
        "temperature": t,
        "fit": {"split": f"validation: {len(val_y):,} images of the training batches (split seed {split_seed})",
                "n": int(len(val_y)), "split_seed": split_seed, "method": "LBFGS on log T, float64, from T = 1",
                "nll_before": fit["nll_before"], "nll_after": fit["nll_after"], "seconds": fit["seconds"]},
        "calibration": calib,
        "ood": {
            "tpr": ood.TPR,
            "in_distribution": f"CIFAR-10 test set ({len(test_y):,} images)",
            "thresholds": thresholds,
            "quantiles": qs,
            "sets": table,
            "n_per_set": n_ood, "seed": seed,
            "mahalanobis": {"file": files.mahalanobis.name, "layer": stats.layer, "dim": int(stats.means.shape[1]),
                            "ridge": stats.ridge, "n_train": stats.n_train,
                            "train_precision": fast_rt.precision, "train_features_cached": cached},
        },
        "provenance": {
            "command": command,
            "hardware": {"scoring": score_rt.describe(), "train_features": fast_rt.describe()},
            "data": describe_source(cifar_test_file(data_dir)),
            "git_commit": _git_commit(),
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
        },
    }
    atomic_write(files.trust, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result


def _git_commit() -> str:
    from cifar.train import git_commit

    return git_commit()


def format_table(result: dict) -> str:
    """The OOD table as text: one row per set, AUROC / FPR@95 per detector."""
    dets = list(result["ood"]["thresholds"])
    lines = [f"{'OOD set':32s} " + " ".join(f"{d:>22s}" for d in dets),
             f"{'':32s} " + " ".join(f"{'AUROC   FPR@95':>22s}" for _ in dets)]
    for row in result["ood"]["sets"].values():
        lines.append(f"{row['title']:32s} " + " ".join(f"{row[d]['auroc']:>13.3f} {row[d]['fpr95']:>8.3f}" for d in dets))
    return "\n".join(lines)


def markdown_tables(results: list[dict]) -> str:
    """The README's two tables from trust files: calibration before/after, and AUROC / FPR@95 per set."""
    from cifar.models import get_model

    rows = ["| model | T | accuracy | ECE (15 bins) | adaptive ECE | MCE | NLL | Brier |", "|---|---:|---:|---|---|---|---|---|"]
    for r in results:
        b, a = r["calibration"]["test"]["before"], r["calibration"]["test"]["after"]
        cells = " | ".join(f"{b[k]:.4f} → **{a[k]:.4f}**" for k in ("ece", "ece_adaptive", "mce", "nll", "brier"))
        rows.append(f"| {get_model(r['model']).title} | {r['temperature']:.3f} | {b['accuracy']:.2%} | {cells} |")
    dets = [*ood.DETECTORS, ood.COMBINED.name]
    titles = {"msp": "MSP", "energy": "energy", "mahalanobis": "Mahalanobis", ood.COMBINED.name: "combined"}
    head = "| OOD set | " + " | ".join(f"{get_model(r['model']).short} {titles[d]}" for r in results for d in dets) + " |"
    table = [head, "|---|" + "---:|" * (len(results) * len(dets))]
    for key in results[0]["ood"]["sets"]:
        cells = [f"{r['ood']['sets'][key][d]['auroc']:.3f} / {r['ood']['sets'][key][d]['fpr95']:.2f}"
                 for r in results for d in dets]
        table.append(f"| {results[0]['ood']['sets'][key]['title']} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\n" + "\n".join(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cifar.trust", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", nargs="+", required=True, help="one or more .safetensors checkpoints")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (else $CIFAR10_DIR, else ./data)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run")
    p.add_argument("--precision", default="fp32", choices=("fp32", "auto"),
                   help="precision of the scored passes (validation, test, OOD sets): fp32 as the app computes, or "
                        "auto (bf16 autocast where the CPU or GPU has it: faster, logits within bf16 rounding)")
    p.add_argument("--ood-per-set", type=int, default=OOD_PER_SET, help="images in each offline OOD set")
    p.add_argument("--seed", type=int, default=OOD_SEED, help="seed of the OOD sets")
    p.add_argument("--batch-size", type=int, default=500, help="images per forward pass")
    p.add_argument("--cache-dir", default="runs/trust-cache",
                   help="where training features are kept between runs (empty string: no cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--report", action="store_true",
                   help="compute nothing: print the README's markdown tables from the checkpoints' .trust.json files")
    args = p.parse_args(argv)
    if args.report:
        try:
            results = [json.loads(RunFiles.beside(c).trust.read_text()) for c in args.checkpoint]
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(markdown_tables(results))
        return 0
    command = "python -m cifar.trust " + " ".join(argv if argv is not None else sys.argv[1:])
    for ckpt in args.checkpoint:
        try:
            result = run_trust(ckpt, args.data_dir, device=args.device, precision=args.precision, n_ood=args.ood_per_set, seed=args.seed,
                               cache_dir=args.cache_dir or None, progress=not args.quiet, batch_size=args.batch_size,
                               command=command)
        except (DataError, CheckpointError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        c = result["calibration"]["test"]
        print(f"{result['model']}: test ECE {c['before']['ece']:.4f} → {c['after']['ece']:.4f}, "
              f"NLL {c['before']['nll']:.4f} → {c['after']['nll']:.4f} at T = {result['temperature']:.3f}")
        print(format_table(result))
        files = RunFiles.beside(ckpt)
        print(f"wrote {files.trust} and {files.mahalanobis} ({files.mahalanobis.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
