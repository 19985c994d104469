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


CPU: list[float] = []  # the CPU seconds of the last `timed` call (all threads of this process)


def timed(fn, repeats: int) -> float:
    """Median wall seconds of fn over `repeats` runs after one warm-up; its median CPU seconds go to CPU.

    On a shared machine the wall time mostly measures the other jobs; the process's CPU time does not,
    and on an idle 2-core machine the wall time is at most about that (2 threads can only overlap it).
    """
    fn()  # warm-up: first calls build the explanation copy and oneDNN kernels
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU[:] = [statistics.median(cpu)]
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--image", type=int, default=0, help="position in the demo bundle")
    p.add_argument("--models", nargs="*", default=["resnet18", "cnn"])
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads; on a loaded machine 1 gives honest CPU times (2 threads spin-wait for each other)")
    p.add_argument("--no-pgd-search", action="store_true", help="skip the PGD minimal-ε search (the slowest part)")
    args = p.parse_args()

    import numpy as np
    import torch

    from cifar import adversarial, corruptions, explain
    from cifar.checkpoints import load_model

    torch.set_num_threads(args.threads)
    with np.load(Path(args.checkpoints) / "demo_images.npz") as z:
        image, index = z["images"][args.image], int(z["indices"][args.image])
    print(f"load average {os.getloadavg()[0]:.1f} (2 cores); {args.threads} torch thread(s); image #{index}; "
          f"median of {args.repeats}")
    for model in args.models:
        net, meta = load_model(Path(args.checkpoints) / f"{model}.safetensors")
        mean, std = meta["normalization"]["mean"], meta["normalization"]["std"]

        def live(name: str, method: str) -> None:
            bad = corruptions.corrupt(image, name, 5, seed=0, indices=[index])
            x = explain.to_input(bad, mean, std)
            pred = int(explain.predict(net, x)[0].argmax())
            explain.attribute(net, x, pred, method, mean=mean, std=std)

        rows = []
        for name in corruptions.list_corruptions():
            rows.append((name, timed(lambda: live(name, "Grad-CAM"), args.repeats), CPU[0]))
        worst = max(rows, key=lambda r: r[2])
        print(f"{model}: corruption + prediction + Grad-CAM: median over corruptions "
              f"{statistics.median(r[1] for r in rows):.3f} s wall / {statistics.median(r[2] for r in rows):.3f} s CPU, "
              f"most CPU: {worst[0]} {worst[1]:.3f} s wall / {worst[2]:.3f} s CPU", flush=True)
        ig = timed(lambda: live(worst[0], "Integrated Gradients"), args.repeats)
        print(f"{model}: {worst[0]} + prediction + Integrated Gradients (50 steps): {ig:.3f} s wall / {CPU[0]:.3f} s CPU",
              flush=True)

        def attacked(name: str) -> None:
            adv = adversarial.attack_image(net, image, 8 / 255, name, mean=mean, std=std)
            x = adversarial.normalize_pixels(adv.pixels, mean, std)
            pred = int(explain.predict(net, x)[0].argmax())
            explain.attribute(net, x, pred, "Grad-CAM", mean=mean, std=std)

        for name in ("fgsm", "pgd"):
            wall = timed(lambda: attacked(name), args.repeats)
            line = f"{model}: {name} ε=8/255 + prediction + Grad-CAM: {wall:.3f} s wall / {CPU[0]:.3f} s CPU"
            if name == "fgsm" or not args.no_pgd_search:
                wall = timed(lambda: adversarial.min_flip_for_image(net, image, name, mean=mean, std=std), 1)
                line += f"; minimal-ε search: {wall:.3f} s wall / {CPU[0]:.3f} s CPU"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
