"""Training throughput of the project's pipeline against the report's, side by side; `python -m cifar.bench`.

    python -m cifar.bench --data-dir ../shared/cifar10 --json runs/bench.json

- project: what `cifar.train` does. The data sits in memory as uint8 tensors, `cifar.data.augment` and
  `normalize` run on whole batches, `Runtime.decide()` picks the precision and memory format, and the
  optimiser is the fused one from `make_optimizer`. The steps are `cifar.train.train_one_epoch` itself.
- report: the report's pipeline, copied faithfully. A Dataset over PIL images with torchvision's
  RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor and Normalize, a
  DataLoader(shuffle=True, num_workers=2), fp32 contiguous NCHW, plain Adam (CNN) or SGD (ResNet18).

Both pipelines use the paper recipe's optimiser and model at the same batch size, so the ratio is the
pipeline alone. The result is a Markdown table for the README. It is a benchmark, not a test:
stop other jobs first, because both pipelines compete for the same cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cifar import CLASSES, MEAN, STD
from cifar.config import RECIPES, TrainConfig, make_config
from cifar.data import DataError, Splits, load_cifar10, to_tensor
from cifar.models import ModelError, build_model
from cifar.runtime import DEVICES, Runtime, cpu_name, seed_everything
from cifar.train import make_optimizer, make_scheduler, steps_per_epoch, train_one_epoch

REPORT_WORKERS = 2  # the report's DataLoader(num_workers=2)
FAKE_IMAGES = 10_000  # random images when the data is missing: 30 MB, several epochs of workers' work
CHUNK_SECONDS = 2.0  # the project's steps run in calls of about this long, so the bar can move


@dataclass(frozen=True)
class Result:
    """Throughput of one model at one batch size, in training images per second."""

    model: str
    batch_size: int
    project: float
    report: float

    @property
    def ratio(self) -> float:
        return self.project / self.report if self.report > 0 else math.inf


def default_batch_sizes(model: str) -> list[int]:
    """The report's batch size (the paper recipe's) and the fast recipe's, smallest first."""
    return sorted({RECIPES["paper"][model]["batch_size"], RECIPES["fast"][model]["batch_size"]})


def load_images(data_dir: str | None, n_fake: int = FAKE_IMAGES) -> tuple[np.ndarray, np.ndarray, str]:
    """The official training images (uint8 NHWC) and labels, or random ones if the data is missing."""
    try:
        data = load_cifar10(data_dir)
        return data.train_images, data.train_labels, data.source
    except DataError as e:
        print(f"note: {(str(e).splitlines() or [type(e).__name__])[0]}\n      measuring on {n_fake:,} random images instead; "
              f"throughput does not depend on pixel values", file=sys.stderr)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(n_fake, 32, 32, 3), dtype=np.uint8)
        return images, rng.integers(0, len(CLASSES), size=n_fake).astype(np.int64), f"random ({n_fake:,} images)"


# ---- the report's pipeline ------------------------------------------------------------------------


def report_transform():
    """The report's transform_train."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


class ReportDataset(Dataset):
    """As torchvision's CIFAR10 serves images: uint8 HWC array → PIL image → transform, one at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def report_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Plain torch.optim Adam or SGD with the recipe's settings (no fused kernel), as the report used."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def report_steps(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, device: torch.device) -> Iterator[int]:
    """Endless training steps of the report's loop; each yields its number of images."""
    loader = DataLoader(ReportDataset(images, labels, report_transform()), batch_size=cfg.batch_size,
                        shuffle=True, num_workers=REPORT_WORKERS)
    model = build_model(cfg.model, **cfg.builder_kwargs()).to(device)
    opt = report_optimizer(cfg, model)
    criterion = nn.CrossEntropyLoss()
    model.train()
    running_loss, correct = 0.0, 0
    while True:  # one pass of this loop is one epoch; the loader restarts its workers, as it did there
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            outputs = model(x)
            loss = criterion(outputs, y)
            loss.backward()
            opt.step()
            # The usual notebook bookkeeping: .item() every step (a device sync on CUDA).
            running_loss += loss.item()
            correct += outputs.argmax(1).eq(y).sum().item()
            yield len(y)


def measure_report(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, device: torch.device,
                   seconds: float, warmup: int, desc: str = "report") -> float:
    """Images per second of the report's loop over `seconds`, after `warmup` steps (workers started)."""
    steps = report_steps(cfg, images, labels, device)
    try:
        for _ in range(warmup):
            next(steps)
        n, t0 = 0, time.perf_counter()
        with _time_bar(seconds, desc) as tick:
            while (elapsed := time.perf_counter() - t0) < seconds:
                tick(elapsed)
                n += next(steps)
        return n / (time.perf_counter() - t0)
    finally:
        steps.close()  # drops the loader iterator, which shuts its workers down


# ---- the project's pipeline -----------------------------------------------------------------------


def _chunk(pool_x: torch.Tensor, pool_y: torch.Tensor, n: int, offset: int = 0) -> Splits:
    """A Splits whose training set is n images of the pool (wrapping around); val and test are empty."""
    idx = (torch.arange(n) + offset) % len(pool_y)
    x, y = pool_x[idx].contiguous(), pool_y[idx]
    return Splits(train_x=x, train_y=y, val_x=x[:0], val_y=y[:0], test_x=x[:0], test_y=y[:0],
                  classes=CLASSES, source="bench", split_seed=0)


class ProjectSteps:
    """The model, optimiser and runtime exactly as `fit` sets them up; `run(n)` is n steps of train_one_epoch."""

    def __init__(self, cfg: TrainConfig, pool_x: torch.Tensor, pool_y: torch.Tensor):
        self.cfg, self.pool_x, self.pool_y = cfg, pool_x, pool_y
        self.rt = Runtime.decide(cfg.device, cfg.precision)
        seed_everything(cfg.seed)
        self.model = self.rt.prepare_model(build_model(cfg.model, **cfg.builder_kwargs()))
        self.opt = make_optimizer(cfg, self.model)
        self.sched = make_scheduler(cfg, self.opt, steps_per_epoch(cfg, len(pool_y)))
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
                    if cfg.ema_decay > 0 else None)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.scaler = self.rt.grad_scaler()
        self._splits: dict[int, Splits] = {}

    def run(self, n_steps: int) -> float:
        """Seconds taken by n_steps training steps (shuffle, augment, steps: all of train_one_epoch)."""
        if n_steps not in self._splits:  # built outside the timing; train_one_epoch gathers its own copy
            chunk = _chunk(self.pool_x, self.pool_y, n_steps * self.cfg.batch_size, offset=len(self._splits) * 997)
            # Where fit keeps the training set: on the GPU under CUDA (Runtime.data_device), else as it is.
            self._splits[n_steps] = replace(chunk, train_x=chunk.train_x.to(self.rt.data_device),
                                            train_y=chunk.train_y.to(self.rt.data_device))
        splits = self._splits[n_steps]
        _sync(self.rt.device)
        t0 = time.perf_counter()
        train_one_epoch(self.model, self.opt, self.sched, self.cfg, splits, self.rt, self.gen, self.ema,
                        epoch=1, progress=False, scaler=self.scaler)
        _sync(self.rt.device)
        return time.perf_counter() - t0


def measure_project(cfg: TrainConfig, pool_x: torch.Tensor, pool_y: torch.Tensor, seconds: float, warmup: int,
                    desc: str = "project") -> float:
    """Images per second of train_one_epoch over about `seconds`, after `warmup` steps."""
    steps = ProjectSteps(cfg, pool_x, pool_y)
    steps.run(1)  # the first step pays for allocations and oneDNN kernel choices
    t_step = steps.run(max(1, warmup - 1)) / max(1, warmup - 1)
    chunk = max(1, round(min(CHUNK_SECONDS, seconds / 5) / t_step))
    n, spent = 0, 0.0
    with _time_bar(seconds, desc) as tick:
        while spent < seconds:
            spent += steps.run(chunk)
            n += chunk * cfg.batch_size
            tick(spent)
    return n / spent


def profile_project(cfg: TrainConfig, pool_x: torch.Tensor, pool_y: torch.Tensor, warmup: int,
                    seconds: float, row_limit: int = 25) -> str:
    """A torch.profiler table (top ops by self CPU time) of about `seconds` of the project's steps."""
    from torch.profiler import ProfilerActivity, profile

    steps = ProjectSteps(cfg, pool_x, pool_y)
    t_step = steps.run(max(1, warmup)) / max(1, warmup)
    n_steps = max(1, round(seconds / t_step))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if steps.rt.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        steps.run(n_steps)
    title = f"torch.profiler: {cfg.model}, batch {cfg.batch_size}, {n_steps} project steps, top ops by self CPU time"
    return title + "\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)


# ---- shared ---------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _time_bar(seconds: float, desc: str) -> Iterator[Callable[[float], None]]:
    """A tqdm bar over the seconds of one measurement; call the yielded tick(elapsed) to move it."""
    bar = tqdm(total=round(seconds, 1), desc=desc, leave=False, bar_format="{l_bar}{bar}| {n:.0f}/{total:g}s")
    try:
        yield lambda elapsed: bar.update(round(min(elapsed, bar.total) - bar.n, 1))
    finally:
        bar.close()


def markdown_table(results: list[Result]) -> str:
    """The results as a Markdown table: model, batch, both throughputs, project/report ratio."""
    lines = ["| model | batch | project img/s | report img/s | ratio |", "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.model} | {r.batch_size} | {r.project:,.0f} | {r.report:,.0f} | {r.ratio:.1f}× |")
    return "\n".join(lines)


def environment(rt: Runtime, source: str) -> dict[str, str | int]:
    """What the numbers depend on: hardware, precision, versions, threads, data."""
    return {"hardware": rt.describe(), "cpu": cpu_name(), "cpu_count": os.cpu_count() or 0,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "data": source}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cifar.bench",
        description="Training throughput (images/s) of the project's pipeline and the report's, side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--models", nargs="+", default=["cnn", "resnet18"], choices=sorted(RECIPES["paper"]),
                   help="models to measure")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None,
                   help="batch sizes for every model (when unset: each model's paper and fast recipe batch sizes)")
    p.add_argument("--seconds", type=float, default=20.0, help="measuring time per model, batch and pipeline, after warm-up")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before measuring")
    p.add_argument("--data-dir", default=None,
                   help="folder holding cifar-10-batches-py/ (else $CIFAR10_DIR, else ./data; random images if missing)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="where both pipelines train")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="the project pipeline's precision, as in training; the report's is always fp32")
    p.add_argument("--profile", action="store_true",
                   help="also print a torch.profiler table of the project pipeline for the first model and batch")
    p.add_argument("--json", default=None, metavar="PATH", help="also save the results and environment here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seconds <= 0 or args.warmup < 1 or (args.batch_sizes and min(args.batch_sizes) < 1):
        print("error: --seconds, --warmup and --batch-sizes must be positive", file=sys.stderr)
        return 2
    try:
        images, labels, source = load_images(args.data_dir)
        pool_x, pool_y = to_tensor(images).contiguous(), torch.from_numpy(labels)
        plan = [(m, b) for m in args.models for b in (args.batch_sizes or default_batch_sizes(m))]
        results = []
        for model, batch in tqdm(plan, desc="bench", unit="config"):
            cfg = make_config(model, "paper", batch_size=batch, device=args.device, precision=args.precision)
            project = measure_project(cfg, pool_x, pool_y, args.seconds, args.warmup, f"{model} b{batch} project")
            report = measure_report(cfg, images, labels, Runtime.decide(cfg.device).device, args.seconds,
                                    args.warmup, f"{model} b{batch} report")
            results.append(Result(model, batch, project, report))
            tqdm.write(f"{model} batch {batch}: project {project:,.0f} img/s, report {report:,.0f} img/s "
                       f"({results[-1].ratio:.1f}×)")
        env = environment(Runtime.decide(args.device, args.precision), source)
    except (ModelError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    print()
    print(f"Training throughput (images/s, higher is better), {args.seconds:g} s per measurement after "
          f"{args.warmup} warm-up step{'s' * (args.warmup != 1)}; the paper recipe's model and optimiser at each batch size.")
    print(f"- hardware: {env['hardware']}")
    print(f"- CPU: {env['cpu']}, {env['cpu_count']} cores; torch {env['torch']}, {env['threads']} threads")
    print(f"- data: {env['data']}")
    print("- project: in-memory uint8 tensors, batched augment + normalize, Runtime.decide() precision and "
          "memory format, fused optimiser (cifar.train.train_one_epoch)")
    print(f"- report: PIL Dataset + torchvision transforms, DataLoader(shuffle=True, num_workers={REPORT_WORKERS}), "
          "fp32 NCHW, torch.optim.Adam / SGD")
    print()
    print(markdown_table(results))

    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = {**env, "seconds": args.seconds, "warmup_steps": args.warmup, "report_workers": REPORT_WORKERS,
               "results": [{**asdict(r), "ratio": r.ratio} for r in results]}
        path.write_text(json.dumps(out, indent=1))
        print(f"\nwrote {path}")

    if args.profile:
        model, batch = plan[0]
        cfg = make_config(model, "paper", batch_size=batch, device=args.device, precision=args.precision)
        print()
        print(profile_project(cfg, pool_x, pool_y, args.warmup, min(args.seconds, 5.0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
