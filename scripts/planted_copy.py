"""How often a planted copy of a test image tops its own proponents, raw TracIn vs cosine, on the real cache.

    python scripts/planted_copy.py [--checkpoints checkpoints] [--n 200] [--seed 0]

For n random test images (seeded), adds the image's own cached features and softmax, with its label, to
the 45,000 cached training images, and counts how often it outscores every one of them for its label.
Needs the feature cache of `python -m cifar.influence`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from cifar import influence
    from cifar.models import list_models

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    for model in list_models():
        folder = influence.cache_dir(model, influence.checkpoint_digest(Path(args.checkpoints) / f"{model}.safetensors"))
        train, test = influence.load_features(folder / "train.npz"), influence.load_features(folder / "test.npz")
        a_norm, g_norm = np.linalg.norm(train.features, axis=1), np.linalg.norm(train.grads, axis=1)
        first = {"cosine": 0, "raw": 0}
        for i in rng.choice(len(test.labels), args.n, replace=False):
            a, g = test.features[i], influence.loss_gradients(test.probs[i], test.labels[i])[0]
            raw = (train.grads @ g) * (train.features @ a)
            first["raw"] += int((g @ g) * (a @ a) > raw.max())
            first["cosine"] += int(1.0 > (raw / (g_norm * np.linalg.norm(g) * a_norm * np.linalg.norm(a))).max())
        print(f"{model}: the planted copy ranks first for {first['cosine']}/{args.n} test images with cosine scores, "
              f"{first['raw']}/{args.n} with raw TracIn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
