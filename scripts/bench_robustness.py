"""What one image costs on the Robustness page, with the app's own functions (no server); a benchmark, not a test.

    python scripts/bench_robustness.py                 # the shipped checkpoints/ and demo images

For ResNet18 and the CustomCNN, per corruption (severity 5, the slowest): corrupt one image + predict +
one attribution (Grad-CAM, the page's default, and Integrated Gradients, 50 steps, the slowest);
then an attack (FGSM and PGD at ε = 8/255) + predict + Grad-CAM, and the minimal-ε search. Median of
`--repeats` runs after one warm-up, 2 torch threads (the app's). Bar: ≤ 1 s for corruption +
prediction + one attribution on ResNet18.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: first calls build the explanation copy and oneDNN kernels
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--image", type=int, default=0, help="position in the demo bundle")
    args = p.parse_args()

    import numpy as np
    import torch

    from cifar import adversarial, corruptions, explain
    from cifar.checkpoints import load_model

    torch.set_num_threads(2)
    with np.load(Path(args.checkpoints) / "demo_images.npz") as z:
        image, index = z["images"][args.image], int(z["indices"][args.image])
    print(f"load average {os.getloadavg()[0]:.1f} (2 cores); image #{index}; median of {args.repeats}")
    for model in ("resnet18", "cnn"):
        net, meta = load_model(Path(args.checkpoints) / f"{model}.safetensors")
        mean, std = meta["normalization"]["mean"], meta["normalization"]["std"]

        def live(name: str, method: str) -> None:
            bad = corruptions.corrupt(image, name, 5, seed=0, indices=[index])
            x = explain.to_input(bad, mean, std)
            pred = int(explain.predict(net, x)[0].argmax())
            explain.attribute(net, x, pred, method, mean=mean, std=std)

        rows = []
        for name in corruptions.list_corruptions():
            rows.append((name, timed(lambda: live(name, "Grad-CAM"), args.repeats)))
        worst = max(rows, key=lambda r: r[1])
        print(f"{model}: corruption + prediction + Grad-CAM: median over corruptions "
              f"{statistics.median(r[1] for r in rows):.3f} s, slowest {worst[0]} {worst[1]:.3f} s")
        ig = timed(lambda: live(worst[0], "Integrated Gradients"), args.repeats)
        print(f"{model}: {worst[0]} + prediction + Integrated Gradients (50 steps): {ig:.3f} s")

        def attacked(name: str) -> None:
            adv = adversarial.attack_image(net, image, 8 / 255, name, mean=mean, std=std)
            x = adversarial.normalize_pixels(adv.pixels, mean, std)
            pred = int(explain.predict(net, x)[0].argmax())
            explain.attribute(net, x, pred, "Grad-CAM", mean=mean, std=std)

        for name in ("fgsm", "pgd"):
            print(f"{model}: {name} ε=8/255 + prediction + Grad-CAM: {timed(lambda: attacked(name), args.repeats):.3f} s; "
                  f"minimal-ε search: "
                  f"{timed(lambda: adversarial.min_flip_for_image(net, image, name, mean=mean, std=std), 1):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
