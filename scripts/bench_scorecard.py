"""Time the explanation checks on one image (the issue's numbers): deletion + insertion curves of one
method, and one full randomisation cascade, on a shipped model.

    python scripts/bench_scorecard.py [--model resnet18] [--image 5] [--repeat 3]

Prints the best of --repeat runs per (task, method), after one warm-up; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from cifar import explain
from cifar import scorecard as sc
from cifar.bundle import load_bundle
from cifar.checkpoints import load_model


def best(fn, repeat: int) -> float:
    fn()  # warm-up (first oneDNN kernels, Captum imports)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--image", type=int, default=5, help="a test index held in checkpoints/demo_images.npz")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--methods", nargs="+", default=["Saliency", "Grad-CAM", "Guided Backprop", "Integrated Gradients"])
    args = p.parse_args()
    net, meta = load_model(f"{args.checkpoints}/{args.model}.safetensors")
    bundle = load_bundle(f"{args.checkpoints}/demo_images.npz")
    x = explain.to_input(bundle.images[bundle.position(args.image)])
    target = int(explain.predict(net, x)[0].argmax())
    s = sc.Settings()
    print(f"{args.model}, test image #{args.image}, torch threads {torch.get_num_threads()}")
    for method in args.methods:
        maps = sc.maps_for(net, x, [target], method)
        curves = best(lambda: sc.curves(net, x, maps, [target], steps=s.steps), args.repeat)
        both = best(lambda: sc.curves(net, x, sc.maps_for(net, x, [target], method), [target], steps=s.steps),
                    args.repeat)
        cascade = best(lambda: sc.sanity_cascade(net, x, [target], [method]), args.repeat)
        print(f"{method:22s} curves {curves:.2f} s · map + curves {both:.2f} s · cascade "
              f"({len(sc.randomisation_blocks(net)) + 1} maps) {cascade:.2f} s")


if __name__ == "__main__":
    main()
