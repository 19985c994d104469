"""The issue's three numbers for calibration and OOD: `python scripts/bench_trust.py`.

- the time the OOD check adds to one upload: the app's prediction before (cifar.explain.predict) against
  what the upload page does now, one forward pass with the penultimate features captured
  (cifar.ood.logits_and_features), the softmax, the three detectors and the verdict (cifar_app.trust);
  warm, median of --repeats in CPU time on one thread (robust on a shared machine), fp32 as the app runs;
- the time to fit the temperature on each model's 5,000 validation logits (kept by python -m cifar.trust
  in runs/trust-cache; skipped when absent);
- the size of the Mahalanobis statistics files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cifar import calibration, explain, ood  # noqa: E402
from cifar.checkpoints import load_model, run_files  # noqa: E402
from cifar.data import load_cifar10, split_indices  # noqa: E402
from cifar.models import list_models  # noqa: E402
from cifar_app import trust  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Median CPU seconds of fn(): process time on one torch thread, so other jobs on a shared machine
    (which stretch wall time, not CPU time) do not count."""
    fn()
    fn()  # warm: caches, oneDNN kernels
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    p.add_argument("--cache-dir", default=str(ROOT / "runs" / "trust-cache"))
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder, for the validation labels of the fit timing")
    args = p.parse_args()
    torch.set_num_threads(1)  # CPU time is then the work itself (see timed)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    total = 0
    for model_name in list_models():
        files = run_files(args.checkpoints, model_name)
        net, meta = load_model(files.weights)
        net = net.to(memory_format=torch.channels_last)
        info = json.loads(files.trust.read_text())
        stats = ood.load_stats(files.mahalanobis)
        x = explain.to_input(image)

        def predict_only():  # the upload page before: one forward pass, softmax
            explain.predict(net, x)

        def with_ood():  # now: one forward pass with the features captured, the three detectors and the verdict
            logits, feats = ood.logits_and_features(net, x)
            calibration.softmax(logits)
            s = trust.image_scores(logits[0], feats[0], stats, info["ood"]["quantiles"])
            trust.verdict(s, info["ood"]["thresholds"], info["ood"]["quantiles"])

        base = timed(predict_only, args.repeats)
        both = timed(with_ood, args.repeats)
        size = files.mahalanobis.stat().st_size
        total += size
        print(f"{model_name}: upload prediction {base * 1e3:.1f} ms CPU, with the OOD check {both * 1e3:.1f} ms "
              f"(+{(both - base) * 1e3:.1f} ms); {files.mahalanobis.name} {size / 1e6:.2f} MB")
        cached = sorted(Path(args.cache_dir).glob(f"{model_name}-*-validation.npz"))
        if cached and args.data_dir:
            with np.load(cached[-1]) as z:
                logits = z["logits"]
            split = meta.get("data") or {}
            _, val_idx = split_indices(50000, int(split.get("val_size", 5000)), int(split.get("split_seed", 42)))
            labels = load_cifar10(args.data_dir).train_labels[val_idx]
            fits = [calibration.fit_temperature(logits, labels) for _ in range(5)]
            print(f"{model_name}: temperature fit on {len(labels):,} validation logits ({cached[-1].name}): "
                  f"{statistics.median(f['seconds'] for f in fits):.3f} s median of 5, "
                  f"{max(f['seconds'] for f in fits):.3f} s at most (T = {fits[0]['temperature']:.4f})")
    print(f"Mahalanobis statistics, both models: {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
