"""How robust are the models? Accuracy under CIFAR-10-C corruptions and under FGSM/PGD, for every model.

`python -m cifar.robustness --data-dir ../shared/cifar10` evaluates every checkpoint in
`--checkpoints` on a seeded, class-stratified subset of the test set (the JPEG copy's test set is
grouped by class, so a plain prefix would be all airplanes) under every corruption × severity of
cifar.corruptions, then FGSM and PGD accuracy against ε on a smaller seeded sample. It writes
`checkpoints/robustness.json` (a few KB) for the app.

Resumable: each finished piece (clean accuracy, one corruption's five severities for all models, one
model's attack curve) is saved at once under `--work-dir`; rerunning the same command skips what is
there. A piece is reused only when the settings it depends on (images, seed, checkpoint file) match.

Summary numbers (pure functions below, `summarize`):
- mean corruption accuracy: the mean over corruptions and severities;
- relative corruption error (Hendrycks & Dietterich 2019): per corruption,
  Σ_s (E_{s,c} − E_clean) / Σ_s (E^base_{s,c} − E^base_clean), averaged over corruptions. Their
  baseline is AlexNet; ours is the CustomCNN (the named `--baseline`), so it is 100% for the CNN by
  definition. Also the unnormalised degradation mean_{c,s}(E_{s,c} − E_clean), in points.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cifar import corruptions as C

OUT_FILE = "robustness.json"
DEFAULT_EPSILONS = (0.5, 1, 2, 4, 8)  # in 1/255 pixel units
FORMAT = 1


# ------------------------------------------------------------------------------ pure


def stratified_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices: `per_class` images of every class, drawn without replacement by a seeded
    generator (all of a class when it has fewer; per_class ≤ 0 means every image)."""
    labels = np.asarray(labels)
    if per_class <= 0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), size=min(per_class, int((labels == c).sum())), replace=False)
             for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def summarize(clean: dict[str, float], table: dict[str, dict[str, list[float]]],
              baseline: str | None = None) -> dict[str, dict[str, float | None]]:
    """Per model: mean corruption accuracy, mean degradation (E_{s,c} − E_clean) and, with a baseline
    model, Hendrycks's mCE and relative mCE against it (None where the baseline lacks a corruption or
    never degrades). `table[model][corruption]` holds the accuracies at severities 1..5."""
    out: dict[str, dict[str, float | None]] = {}
    for model, rows in table.items():
        accs = np.array([v for v in rows.values()], dtype=float)
        err_clean = 1 - clean[model]
        res: dict[str, float | None] = {
            "clean_accuracy": clean[model],
            "mean_corruption_accuracy": float(accs.mean()) if accs.size else None,
            "mean_degradation": float(((1 - accs) - err_clean).mean()) if accs.size else None,
            "mce": None, "relative_mce": None,
        }
        if baseline in table and baseline in clean:
            ces, rels = [], []
            for name, acc in rows.items():
                if name not in table[baseline]:
                    continue
                e, b = 1 - np.asarray(acc), 1 - np.asarray(table[baseline][name])
                ces.append(e.sum() / b.sum() if b.sum() > 0 else np.nan)
                db = (b - (1 - clean[baseline])).sum()
                rels.append((e - err_clean).sum() / db if db > 0 else np.nan)
            if ces and np.isfinite(ces).all():
                res["mce"] = float(np.mean(ces))
            if rels and np.isfinite(rels).all():
                res["relative_mce"] = float(np.mean(rels))
        out[model] = res
    return out


# ------------------------------------------------------------------------------ the run


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _load_part(path: Path, key: dict) -> dict | None:
    try:
        part = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return part if part.get("key") == key else None


def _predict(net, images_u8: np.ndarray, rt, batch_size: int) -> np.ndarray:
    import torch

    from cifar.data import normalize, to_tensor

    out = []
    with torch.no_grad():
        for i in range(0, len(images_u8), batch_size):
            x = rt.prepare_input(normalize(to_tensor(images_u8[i:i + batch_size])))
            with rt.autocast():
                out.append(net(x).float().argmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def run(args: argparse.Namespace) -> dict:
    import torch
    from tqdm.auto import tqdm

    from cifar import adversarial as A
    from cifar.checkpoints import load_model, run_files
    from cifar.data import describe_source, load_test_split
    from cifar.models import list_models
    from cifar.runtime import Runtime

    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt_dir = Path(args.checkpoints)
    models = args.models or [m for m in list_models() if run_files(ckpt_dir, m).weights.exists()]
    if not models:
        raise ValueError(f"no checkpoints found in {ckpt_dir} (looked for {', '.join(list_models())})")
    names = args.corruptions or C.list_corruptions()
    for n in names:
        C.get_corruption(n)
    severities = list(args.severities)
    rt = Runtime.decide(args.device, args.precision)
    test_x, test_y, test_file = load_test_split(args.data_dir)
    subset = stratified_subset(test_y, args.per_class, args.seed)
    adv_subset = stratified_subset(test_y, args.adv_per_class, args.seed + 1)
    images, labels = test_x[subset], np.asarray(test_y)[subset]
    nets, files = {}, {}
    for m in models:
        path = run_files(ckpt_dir, m).weights
        net, meta = load_model(path, expect=m)
        nets[m] = (rt.prepare_model(net).eval(), meta)
        files[m] = {"file": path.name, "md5": _md5(path)}
    data = describe_source(test_file)
    work = Path(args.work_dir)
    base_key = {"format": FORMAT, "data_md5": data.get("test_md5"), "subset_md5": hashlib.md5(subset.tobytes()).hexdigest(),
                "seed": args.seed, "precision": rt.precision}
    timing: dict[str, float] = {}
    t_start = time.time()
    print(f"{len(subset):,} test images ({args.per_class or 'all'} per class, seed {args.seed}), "
          f"{len(names)} corruptions × {len(severities)} severities, models: {', '.join(models)}; "
          f"parts in {work}", flush=True)

    # clean accuracy on the same subset
    clean: dict[str, float] = {}
    for m in models:
        key = {**base_key, "model": files[m]}
        part = _load_part(work / f"clean-{m}.json", key)
        if part is None:
            t = time.time()
            preds = _predict(nets[m][0], images, rt, args.batch_size)
            part = {"key": key, "accuracy": float((preds == labels).mean()), "seconds": time.time() - t}
            _atomic_json(work / f"clean-{m}.json", part)
        clean[m] = part["accuracy"]
        timing[f"clean/{m}"] = part["seconds"]

    from cifar.runtime import cpu_name

    table: dict[str, dict[str, list[float]]] = {m: {} for m in models}
    adversarial: dict[str, dict] = {}

    def write(complete: bool) -> dict:
        result = {
            "format": FORMAT,
            "complete": complete,
            "command": "python -m cifar.robustness " + " ".join(args.argv),
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "hardware": rt.describe() if rt.device.type == "cuda" else f"{cpu_name()}, {torch.get_num_threads()} threads; "
                                                                        f"{rt.precision}; torch {torch.__version__}",
            "data": data,
            "subset": {"per_class": args.per_class, "seed": args.seed, "n": int(len(subset)),
                       "adv_per_class": args.adv_per_class, "adv_n": int(len(adv_subset)),
                       "stratified": "the same number of test images from every class"},
            "corruption_seed": args.corruption_seed,
            "severities": severities,
            "corruptions": {n: {"title": C.CORRUPTIONS[n].title, "family": C.CORRUPTIONS[n].family,
                                "params": [list(p) if isinstance(p, tuple) else p for p in C.CORRUPTIONS[n].params],
                                "deviation": C.CORRUPTIONS[n].deviation} for n in names},
            "models": {m: {"checkpoint": files[m], "clean_accuracy": clean[m], "corruptions": table[m],
                           "adversarial": adversarial.get(m, {})} for m in models},
            "baseline": args.baseline if args.baseline in models else None,
            "summary": summarize(clean, table, args.baseline if args.baseline in models else None),
            "attacks": {a: A.get_attack(a).help for a in args.attacks},
            "timing_s": {"total_compute": round(sum(timing.values()), 1), "this_invocation": round(time.time() - t_start, 1),
                         "parts": {k: round(v, 1) for k, v in timing.items()}},
        }
        _atomic_json(Path(args.out), result)
        return result

    # adversarial: accuracy against ε, per model and attack, on a smaller sample
    epsilons = [0.0, *[e / 255 for e in args.epsilons]]
    adv_x = A.to_pixels(test_x[adv_subset])
    adv_y = torch.as_tensor(np.asarray(test_y)[adv_subset])
    for m in models:
        adversarial[m] = {"epsilons_255": [0.0, *map(float, args.epsilons)], "n": len(adv_subset)}
        net, meta = nets[m]
        norm = meta.get("normalization") or {}
        pixel = A.PixelModel(net, norm.get("mean", (0.5,) * 3), norm.get("std", (0.5,) * 3)).eval()
        pixel.requires_grad_(False)
        for attack in args.attacks:
            # not keyed by the corruption subset: the attack sample is its own (--adv-per-class)
            key = {**{k: v for k, v in base_key.items() if k != "subset_md5"}, "model": files[m], "attack": attack,
                   "epsilons": epsilons, "adv_subset_md5": hashlib.md5(adv_subset.tobytes()).hexdigest()}
            path = work / f"attack-{m}-{attack}.json"
            part = _load_part(path, key)
            if part is None:
                t = time.time()
                with tqdm(total=len(adv_subset), desc=f"{attack} {m}", unit="img", dynamic_ncols=True) as b:
                    accs = A.accuracy_vs_epsilon(pixel, adv_x, adv_y, epsilons, attack,
                                                 batch_size=args.batch_size, progress=b.update)
                part = {"key": key, "accuracy": accs, "seconds": time.time() - t}
                _atomic_json(path, part)
                tqdm.write(f"{attack} {m}: " + " ".join(f"{e * 255:g}/255 {a:.3f}" for e, a in zip(epsilons, accs))
                           + f"  ({part['seconds']:.0f} s)")
            adversarial[m][attack] = part["accuracy"]
            timing[f"{attack}/{m}"] = part["seconds"]
            write(complete=False)

    # corruptions: one part per corruption, all models (so a partial run compares like with like)
    todo = len(names) * len(severities) * len(subset)
    bar = tqdm(total=todo, desc="corruptions", unit="img", dynamic_ncols=True)
    for name in names:
        key = {**base_key, "corruption": name, "severities": severities, "models": {m: files[m] for m in models},
               "corruption_seed": args.corruption_seed, "version": C.VERSION}
        path = work / f"corruption-{name}.json"
        part = _load_part(path, key)
        if part is None:
            t = time.time()
            acc: dict[str, list[float]] = {m: [] for m in models}
            for s in severities:
                bar.set_postfix_str(f"{name} s{s}")
                bad = C.corrupt(images, name, s, seed=args.corruption_seed, indices=subset)
                for m in models:
                    acc[m].append(float((_predict(nets[m][0], bad, rt, args.batch_size) == labels).mean()))
                bar.update(len(subset))
            part = {"key": key, "accuracy": acc, "seconds": time.time() - t}
            _atomic_json(path, part)
            tqdm.write(f"{name:18s} " + "  ".join(f"{m} " + " ".join(f"{a:.3f}" for a in acc[m]) for m in models)
                       + f"  ({part['seconds']:.0f} s)")
        else:
            bar.update(len(severities) * len(subset))
        for m in models:
            table[m][name] = part["accuracy"][m]
        timing[f"corruption/{name}"] = part["seconds"]
        write(complete=False)
    bar.close()

    return write(complete=True)


def main(argv: list[str] | None = None) -> int:
    from cifar.data import DataError
    from cifar.checkpoints import CheckpointError

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m cifar.robustness", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Accuracy of every model under CIFAR-10-C corruptions and FGSM/PGD attacks; "
                                            "writes a small JSON for the app. Resumable: rerun the same command.")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (else $CIFAR10_DIR, else ./data)")
    p.add_argument("--checkpoints", default="checkpoints", help="folder with the models' .safetensors")
    p.add_argument("--models", nargs="*", default=None, help="model names (default: every one with a checkpoint)")
    p.add_argument("--per-class", type=int, default=100,
                   help="test images per class for the corruption sweep (0 = all 10,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image subset")
    p.add_argument("--corruption-seed", type=int, default=0, help="seed of the corruptions' randomness")
    p.add_argument("--corruptions", nargs="*", default=None, choices=C.list_corruptions(), metavar="NAME",
                   help=f"default: all ({', '.join(C.list_corruptions())})")
    p.add_argument("--severities", nargs="*", type=int, default=list(C.SEVERITIES), choices=C.SEVERITIES)
    p.add_argument("--adv-per-class", type=int, default=20, help="test images per class for the attack curves")
    p.add_argument("--attacks", nargs="*", default=["fgsm", "pgd"], choices=["fgsm", "pgd"])
    p.add_argument("--epsilons", nargs="*", type=float, default=list(DEFAULT_EPSILONS),
                   help="L∞ budgets in 1/255 units (0 is always included)")
    p.add_argument("--baseline", default="cnn", help="the model relative corruption errors are measured against")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="fp32", choices=("auto", "bf16", "fp32"),
                   help="fp32 matches the shipped clean predictions; bf16 is ~1.6× faster on a bf16 CPU")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--work-dir", default="runs/robustness", help="where finished parts are kept for resuming")
    p.add_argument("--out", default=None, help=f"the results file (default: <checkpoints>/{OUT_FILE})")
    args = p.parse_args(argv)
    args.argv = argv
    if args.out is None:
        args.out = str(Path(args.checkpoints) / OUT_FILE)
    if any(not 0 < e <= 255 for e in args.epsilons):
        p.error("--epsilons are in 1/255 units and must be in (0, 255]")
    try:
        result = run(args)
    except (DataError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for m, s in result["summary"].items():
        rel = f"{s['relative_mce']:.1%}" if s["relative_mce"] is not None else "n/a"
        print(f"{m}: clean {s['clean_accuracy']:.3f}  mean corruption accuracy {s['mean_corruption_accuracy']:.3f}  "
              f"mean degradation {s['mean_degradation']:+.3f}  relative mCE vs {result['baseline']}: {rel}")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
