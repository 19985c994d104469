"""Time one image's proponents, opponents and neighbours over every cached training image, as the app does.

    python scripts/bench_influence.py --data-dir ../shared/cifar10 [--checkpoints checkpoints] [--repeat 20]

Needs the feature cache of `python -m cifar.influence`. Prints, per model: reading the cache, the fp32
forward pass of one test image (features and softmax), and cifar_app.influences.rank (TracIn + cosine
neighbours over all N training images), median of --repeat runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    from cifar import influence
    from cifar.checkpoints import load_model, run_files
    from cifar.data import load_test_split
    from cifar.explain import to_input
    from cifar.features import penultimate
    from cifar.models import list_models
    from cifar_app import influences

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--image", type=int, default=0, help="test index")
    args = p.parse_args()
    images, _, _ = load_test_split(args.data_dir)
    print(f"torch threads {torch.get_num_threads()}")
    for model in list_models():
        ckpt = run_files(args.checkpoints, model).weights
        start = time.perf_counter()
        full = influences.load_full(model, influence.checkpoint_digest(ckpt), True)
        if full is None:
            print(f"{model}: no feature cache; run python -m cifar.influence first")
            continue
        bank, _ = full
        load_s = time.perf_counter() - start
        net, meta = load_model(ckpt)
        norm = meta["normalization"]
        x = to_input(images[args.image], norm["mean"], norm["std"])
        fwd, rank = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            f, logits = penultimate(net, x)
            probs = torch.softmax(logits, 1)[0].numpy()
            t1 = time.perf_counter()
            influences.rank(bank, f[0].numpy(), probs, int(probs.argmax()), 8)
            t2 = time.perf_counter()
            fwd.append(t1 - t0)
            rank.append(t2 - t1)
        print(f"{model}: {len(bank):,} training images × {bank.features.shape[1]} features; cache read {load_s:.2f} s "
              f"(once per server); forward {statistics.median(fwd) * 1000:.0f} ms, rank "
              f"{statistics.median(rank) * 1000:.0f} ms (median of {args.repeat}; max {max(rank) * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
