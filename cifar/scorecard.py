"""Can I trust this explanation? Sanity checks, faithfulness scores and the scorecard CLI.

- Sanity check (Adebayo et al. 2018): cascading model-parameter randomisation. A deep copy of the
  model has its blocks re-initialised from the logits downward, one block at a time
  (`randomisation_blocks`), and the map is recomputed after each step; `spearman` (of |attr| and of
  the signed map) and `ssim` say how much of the original map survives. A map that stays the same
  when the weights are random explains the image, not the model.
- Faithfulness for one image: `curves` gives RISE's deletion and insertion curves (Petsiuk et al.
  2018) and `auc` their areas; `infidelity` and `max_sensitivity` wrap captum.metrics.
- The scorecard: `python -m cifar.scorecard` runs all of it for both shipped models, every registered
  method and two references (a random map and a Sobel edge map) over a seeded sample of test images,
  half of them errors, and writes checkpoints/trust_scorecard.json.

Pure numpy/torch (the app imports this module; no SciPy or scikit-learn). Nothing here changes the
model it is given: randomisation works on a deep copy.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cifar import MEAN, STD, explain
from cifar.models import spec_of

# ------------------------------------------------------------------------------ similarity


def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a flattened array, ties given their average rank (scipy.stats.rankdata's default)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    order = np.argsort(a, kind="stable")
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.arange(1, a.size + 1)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; 0.0 when either is constant (no order to compare)."""
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def _unit(a: np.ndarray) -> np.ndarray:
    """|map| scaled to [0, 1] by its 99th percentile, as the app displays it (explain.to_display)."""
    return explain.to_display(a, "absolute").astype(np.float64)


def ssim(a: np.ndarray, b: np.ndarray, *, window: int = 7) -> float:
    """Structural similarity of two maps' |attr| (each scaled to [0, 1] as displayed).

    scikit-image's defaults: a uniform `window`×`window` window over the valid positions, data range
    1, K1 = 0.01, K2 = 0.03, sample (n − 1) variances; the mean over windows.
    """
    x, y = _unit(a), _unit(b)
    if x.shape != y.shape or x.ndim != 2 or min(x.shape) < window:
        raise ValueError(f"ssim needs two equal 2D maps of at least {window}×{window}, got {x.shape} and {y.shape}")
    view = np.lib.stride_tricks.sliding_window_view
    n = window * window
    mx, my = view(x, (window, window)).mean((-1, -2)), view(y, (window, window)).mean((-1, -2))
    cov = n / (n - 1)
    vx = (view(x * x, (window, window)).mean((-1, -2)) - mx * mx) * cov
    vy = (view(y * y, (window, window)).mean((-1, -2)) - my * my) * cov
    vxy = (view(x * y, (window, window)).mean((-1, -2)) - mx * my) * cov
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def similarity(original: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """The three sanity-check scores of a randomised map against the original one."""
    return {"spearman_abs": spearman(np.abs(original), np.abs(other)),
            "spearman": spearman(original, other),
            "ssim": ssim(original, other)}


# ------------------------------------------------------------------------------ randomisation

# The blocks re-initialised at each step of the cascade, top (logits) first, per registered model.
# A model missing here falls back to its top-level children that hold parameters, last first.
BLOCKS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "cnn": (("fc2", ("fc2",)), ("fc1", ("fc1",)), ("conv3", ("conv3",)), ("conv2", ("conv2",)),
            ("conv1", ("conv1",))),
    "resnet18": (("fc", ("fc",)), ("layer4.1", ("layer4.1",)), ("layer4.0", ("layer4.0",)),
                 ("layer3.1", ("layer3.1",)), ("layer3.0", ("layer3.0",)), ("layer2.1", ("layer2.1",)),
                 ("layer2.0", ("layer2.0",)), ("layer1.1", ("layer1.1",)), ("layer1.0", ("layer1.0",)),
                 ("stem", ("conv1", "bn1"))),
}
ORIGINAL = "original"  # the label of step 0, before anything is randomised


def randomisation_blocks(model: nn.Module) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(label, module names) of each cascade step, from the logits downward."""
    spec = spec_of(model)
    if spec is not None and spec.name in BLOCKS:
        return BLOCKS[spec.name]
    children = [(n, (n,)) for n, m in model.named_children() if any(True for _ in m.parameters())]
    return tuple(reversed(children))


@dataclass(frozen=True)
class Step:
    """One step of the cascade: its label and every module re-initialised so far (cumulative)."""

    label: str
    randomised: tuple[str, ...]
    model: nn.Module  # the randomised copy at this step (the same object at every step: use it before the next)


def _reinit(module: nn.Module) -> None:
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()  # PyTorch's own initialisation; BatchNorm also resets its running stats


def cascade(model: nn.Module, *, seed: int = 0, blocks=None) -> Iterator[Step]:
    """Cascading randomisation on a deep copy: step 0 is the copy as is, then each block of
    `randomisation_blocks` (top first) is re-initialised in turn, seeded, keeping the ones above random.

    The model passed in is never changed, hooked or put into train mode.
    """
    blocks = randomisation_blocks(model) if blocks is None else blocks
    modules = dict(model.named_modules())
    for _, names in blocks:
        for name in names:
            if name not in modules:
                raise KeyError(f"{type(model).__name__} has no module {name!r} to randomise")
    net = copy.deepcopy(model).eval()
    for m in net.modules():  # deepcopy copies hooks too: the copy starts clean
        for hooks in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks):
            hooks.clear()
    net_modules = dict(net.named_modules())
    done: list[str] = []
    yield Step(ORIGINAL, (), net)
    for i, (label, names) in enumerate(blocks):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) * 1000 + i)
            for name in names:
                _reinit(net_modules[name])
        done.extend(names)
        yield Step(label, tuple(done), net)


def maps_for(model: nn.Module, x: torch.Tensor, targets: Sequence[int], method: str, *, seed: int = 0,
             mean: Sequence[float] = MEAN, std: Sequence[float] = STD, params: dict | None = None) -> np.ndarray:
    """(N, H, W) maps of a registered method or a reference (explain.REFERENCES) for a batch."""
    if method in explain.REFERENCES:
        return explain.reference_maps(method, x, seed=seed, mean=mean, std=std)
    return explain.attribute_batch(model, x, targets, method, mean=mean, std=std, **(params or {}))


def sanity_cascade(model: nn.Module, x: torch.Tensor, targets: Sequence[int], methods: Sequence[str], *,
                   seed: int = 0, mean: Sequence[float] = MEAN, std: Sequence[float] = STD,
                   params: dict[str, dict] | None = None, progress=None) -> dict:
    """Run the cascade once for a batch and several methods.

    → {"steps": [label, ...], "maps": {method: (steps, N, H, W)}, "scores": {method: {score: (steps, N)}}}.
    The random reference draws a new map at every step (its floor); the Sobel map never changes (the
    score an edge detector gets). `progress(i, n)` is called after each step.
    """
    params = params or {}
    n_steps = len(randomisation_blocks(model)) + 1
    labels = []
    out_maps: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for i, step in enumerate(cascade(model, seed=seed)):  # lazily: every step changes the same copy
        labels.append(step.label)
        for method in methods:
            out_maps[method].append(maps_for(step.model, x, targets, method, seed=seed * 1000 + i, mean=mean,
                                             std=std, params=params.get(method)))
        if progress is not None:
            progress(i + 1, n_steps)
    maps = {m: np.stack(v) for m, v in out_maps.items()}
    scores = {}
    for m, stack in maps.items():
        per = [[similarity(stack[0, j], stack[i, j]) for j in range(stack.shape[1])] for i in range(len(labels))]
        scores[m] = {k: np.array([[s[k] for s in row] for row in per]) for k in ("spearman_abs", "spearman", "ssim")}
    return {"steps": labels, "maps": maps, "scores": scores}


# ------------------------------------------------------------------------------ deletion / insertion

BLUR_KERNEL, BLUR_SIGMA = 11, 5.0  # RISE's insertion start


def blur(x: torch.Tensor, kernel: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Gaussian blur of a (N, C, H, W) batch per channel (separable, reflect padding)."""
    r = kernel // 2
    t = torch.arange(kernel, dtype=torch.float32) - r
    g = torch.exp(-(t * t) / (2 * sigma * sigma))
    g = (g / g.sum()).to(x.dtype)
    c = x.shape[1]
    y = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
    y = torch.nn.functional.conv2d(y, g.view(1, 1, 1, -1).expand(c, 1, 1, kernel), groups=c)
    return torch.nn.functional.conv2d(y, g.view(1, 1, -1, 1).expand(c, 1, kernel, 1), groups=c)


def auc(curve: np.ndarray) -> np.ndarray:
    """Area under curves over a normalised x-axis (trapezoid): (sum − first/2 − last/2) / (n − 1)."""
    c = np.asarray(curve, dtype=np.float64)
    return (c.sum(-1) - c[..., 0] / 2 - c[..., -1] / 2) / (c.shape[-1] - 1)


def pixel_order(attr: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """(N, H·W) pixel indices, highest attribution first; ties in a seeded random order, not raster."""
    a = np.asarray(attr, dtype=np.float64).reshape(len(attr), -1)
    tie = np.random.default_rng(seed).random(a.shape)
    return np.lexsort((tie, -a), axis=-1)


@torch.no_grad()
def _probabilities(model: nn.Module, batch: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
    out = []
    for xs, ts in zip(batch.split(chunk), targets.split(chunk)):
        out.append(torch.softmax(model(xs).float(), dim=1).gather(1, ts.view(-1, 1))[:, 0])
    return torch.cat(out)


def curves(model: nn.Module, x: torch.Tensor, attr: np.ndarray, targets: Sequence[int], *, steps: int = 16,
           baseline: torch.Tensor | None = None, seed: int = 0, chunk: int = 256,
           mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> dict[str, np.ndarray]:
    """RISE's deletion and insertion curves for a batch → {"deletion", "insertion"}: (N, steps + 1).

    Pixels (all 3 channels) are changed in the order `attr` ranks them, highest first, H·W/steps per
    step; each point is the softmax probability of the image's target class. Deletion replaces them
    with `baseline` (default: the black image, the default baseline of Integrated Gradients and
    Occlusion); insertion starts from the blurred image and puts the originals back.
    """
    x = torch.as_tensor(x).detach().float().cpu()
    n, c, h, w = x.shape
    attr = np.asarray(attr)
    if attr.shape != (n, h, w):
        raise ValueError(f"expected maps of shape {(n, h, w)}, got {attr.shape}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if baseline is None:
        baseline = explain.baseline_image("black", x, mean, std)
    baseline = torch.as_tensor(baseline).float().cpu().expand_as(x)
    blurred = blur(x)
    order = torch.from_numpy(pixel_order(attr, seed=seed))
    counts = torch.round(torch.arange(steps + 1) * (h * w / steps)).long()  # pixels changed at each point
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w).expand(n, -1))  # rank of each pixel in its image's order
    mask = (rank.unsqueeze(1) < counts.view(1, -1, 1)).view(n, steps + 1, 1, h, w).float()  # 1 = changed
    xs, bs, blur_s = x.unsqueeze(1), baseline.unsqueeze(1), blurred.unsqueeze(1)
    deletion = (xs * (1 - mask) + bs * mask).reshape(-1, c, h, w)
    insertion = (blur_s * (1 - mask) + xs * mask).reshape(-1, c, h, w)
    t = torch.as_tensor(list(targets), dtype=torch.long).repeat_interleave(steps + 1)
    device = next(model.parameters()).device
    with explain._eval_mode(model):
        both = torch.cat([deletion, insertion]).to(device)
        probs = _probabilities(model, both, torch.cat([t, t]).to(device), chunk).cpu().numpy()
    half = n * (steps + 1)
    return {"deletion": probs[:half].reshape(n, steps + 1), "insertion": probs[half:].reshape(n, steps + 1)}


# ------------------------------------------------------------------------------ captum metrics

INFIDELITY_STD = 0.1  # noise per pixel (shared by its 3 channels), normalised units: the input spans 2.0
SENSITIVITY_RADIUS = 0.02  # captum's default L∞ radius, normalised units


def _as_input_shape(maps: np.ndarray | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # A channel-summed (N, H, W) map spread evenly over the channels, so that (noise · map) is the same
    # sum for a perturbation shared by a pixel's channels.
    m = torch.as_tensor(np.asarray(maps), dtype=like.dtype, device=like.device).unsqueeze(1)
    return (m / like.shape[1]).expand_as(like).contiguous()


def infidelity(model: nn.Module, x: torch.Tensor, maps: np.ndarray, targets: Sequence[int], *,
               n_samples: int = 10, noise: float = INFIDELITY_STD, seed: int = 0) -> np.ndarray:
    """captum.metrics.infidelity (normalize=True, so comparable across methods) → (N,), lower is better.

    Perturbations are Gaussian noise of std `noise` per pixel, the same on its 3 channels, through
    `infidelity_perturb_func_decorator(multiply_by_inputs=False)` (which turns perturbed inputs into
    perturbations).
    """
    from captum.metrics import infidelity as captum_infidelity
    from captum.metrics import infidelity_perturb_func_decorator

    g = torch.Generator().manual_seed(int(seed))

    @infidelity_perturb_func_decorator(multiply_by_inputs=False)
    def perturb(inputs: torch.Tensor) -> torch.Tensor:
        n, _, h, w = inputs.shape
        eps = torch.randn(n, 1, h, w, generator=g).to(inputs) * noise
        return inputs - eps

    x = torch.as_tensor(x).detach().float()
    with explain._eval_mode(model), torch.no_grad():
        score = captum_infidelity(model, perturb, x, _as_input_shape(maps, x), target=torch.as_tensor(list(targets)),
                                  n_perturb_samples=int(n_samples), normalize=True)
    return score.detach().cpu().numpy().astype(np.float64)


def max_sensitivity(model: nn.Module, x: torch.Tensor, targets: Sequence[int], method: str, *,
                    n_samples: int = 5, radius: float = SENSITIVITY_RADIUS, seed: int = 0,
                    mean: Sequence[float] = MEAN, std: Sequence[float] = STD, params: dict | None = None) -> np.ndarray:
    """captum.metrics.sensitivity_max of a method → (N,), lower is better.

    The largest relative change (Frobenius norm, divided by the original map's) over `n_samples`
    inputs drawn uniformly in the L∞ ball of `radius` (normalised units); each recomputes the map.
    """
    from captum.metrics import sensitivity_max

    def explanation(inputs, target: torch.Tensor) -> torch.Tensor:
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs  # captum passes a tuple of one
        target = torch.as_tensor(target).reshape(-1)
        if len(target) == 1:  # captum leaves a one-element target as it is
            target = target.expand(len(inputs))
        maps = maps_for(model, inputs, target.tolist(), method, seed=seed, mean=mean, std=std, params=params)
        return (_as_input_shape(maps, inputs),)  # a tuple: captum iterates over what this returns

    x = torch.as_tensor(x).detach().float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        score = sensitivity_max(explanation, x, perturb_radius=float(radius), n_perturb_samples=int(n_samples),
                                target=torch.as_tensor(list(targets)))
    return score.detach().cpu().numpy().astype(np.float64)


# ------------------------------------------------------------------------------ the scorecard

FORMAT = "cifar-explain-scorecard/1"
SCORECARD_FILE = "explain_scorecard.json"  # in the checkpoint folder, beside the models it scores
TARGET = "predicted"  # every map explains the class the model predicted (on errors: the wrong one)
# A method fails the sanity check when its randomised maps still correlate this much with the original,
# on average over the cascade's steps (Spearman of |attr|): Adebayo et al.'s Guided Backprop barely
# changes while the top layers are random, though it does change once the first conv is.
SANITY_FAIL = 0.5
ROUND = 4  # decimals kept per number in the file


@dataclass(frozen=True)
class Settings:
    """What the scorecard measured and how; saved in the file."""

    images: int = 200  # per model, half of them that model's errors
    seed: int = 0
    steps: int = 8  # deletion/insertion points after the start: 1024 px / 8 = 128 px per step
    infidelity_samples: int = 5
    infidelity_noise: float = INFIDELITY_STD
    sensitivity_images: int = 16  # the first ones of the sample (half errors): sensitivity reruns the method
    sensitivity_samples: int = 3
    sensitivity_radius: float = SENSITIVITY_RADIUS
    cascade_images: int = 8  # the first ones of the sample: the cascade reruns the method per block
    ig_steps: int = 16  # Integrated Gradients' steps here (the app's default is 50): it runs ~600 times per image
    smoothgrad_samples: int = 8  # SmoothGrad's noisy samples here (the app's default is 20), for the same reason
    batch: int = 8  # images per attribution call

    def method_params(self, method: str) -> dict:
        """The settings a method runs with in the scorecard (its registry defaults otherwise)."""
        return {"Integrated Gradients": {"steps": self.ig_steps},
                "SmoothGrad": {"n_samples": self.smoothgrad_samples}}.get(method, {})


def methods_scored() -> tuple[str, ...]:
    """Every registered attribution method, then the two references."""
    return (*explain.METHODS, *explain.REFERENCES)


def choose_sample(labels: np.ndarray, preds: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n test indices, seeded: n/2 of the model's errors and n/2 it gets right, alternating (error first),
    so that any prefix (the cascade's, sensitivity's) is half errors too."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    errors, right = np.flatnonzero(preds != labels), np.flatnonzero(preds == labels)
    n_err = min(n // 2, len(errors))
    n_ok = min(n - n_err, len(right))
    if n_err + n_ok < n:
        raise ValueError(f"a sample of {n} needs more images: {len(errors)} errors and {len(right)} right")
    rng = np.random.default_rng(seed)
    e, r = rng.choice(errors, n_err, replace=False), rng.choice(right, n_ok, replace=False)
    out = []
    for i in range(max(n_err, n_ok)):
        out.extend(([e[i]] if i < n_err else []) + ([r[i]] if i < n_ok else []))
    return np.array(out, dtype=np.int64)


def _r(a) -> list:
    return np.round(np.asarray(a, dtype=np.float64), ROUND).tolist()


def score_method(model: nn.Module, x: torch.Tensor, targets: list[int], method: str, settings: Settings, *,
                 mean: Sequence[float], std: Sequence[float], bar=None) -> dict:
    """Every number the scorecard keeps for one method on one model's sample."""
    s = settings
    params = s.method_params(method)
    t0 = time.perf_counter()
    n = len(targets)
    maps = []
    for i in range(0, n, s.batch):
        maps.append(maps_for(model, x[i:i + s.batch], targets[i:i + s.batch], method, seed=s.seed + i, mean=mean, std=std,
                             params=params))
        if bar is not None:
            bar.update(len(targets[i:i + s.batch]))
    maps = np.concatenate(maps)
    dele, ins, infid = [], [], []
    for i in range(0, n, s.batch):
        c = curves(model, x[i:i + s.batch], maps[i:i + s.batch], targets[i:i + s.batch], steps=s.steps, seed=s.seed + i,
                   mean=mean, std=std)
        dele.append(c["deletion"])
        ins.append(c["insertion"])
        infid.append(infidelity(model, x[i:i + s.batch], maps[i:i + s.batch], targets[i:i + s.batch],
                                n_samples=s.infidelity_samples, noise=s.infidelity_noise, seed=s.seed + i))
        if bar is not None:
            bar.update(len(targets[i:i + s.batch]))
    dele, ins = np.concatenate(dele), np.concatenate(ins)
    out = {"deletion_auc": _r(auc(dele)), "insertion_auc": _r(auc(ins)),
           "deletion_curve": _r(dele.mean(0)), "insertion_curve": _r(ins.mean(0)),
           "infidelity": np.asarray(np.concatenate(infid), dtype=np.float64).tolist()}
    out["infidelity"] = [float(f"{v:.4g}") for v in out["infidelity"]]  # spans decades: 4 significant digits
    k = min(s.sensitivity_images, n)
    if method == "Random" or k == 0:
        out["sensitivity"] = []  # a fresh random map per call has no meaningful sensitivity
    else:
        sens = [max_sensitivity(model, x[i:min(i + s.batch, k)], targets[i:min(i + s.batch, k)], method,
                                n_samples=s.sensitivity_samples, radius=s.sensitivity_radius, seed=s.seed + i,
                                mean=mean, std=std, params=params) for i in range(0, k, s.batch)]
        if bar is not None:
            bar.update(k)
        out["sensitivity"] = _r(np.concatenate(sens))
    k = min(s.cascade_images, n)
    if k:
        run = sanity_cascade(model, x[:k], targets[:k], [method], seed=s.seed, mean=mean, std=std,
                             params={method: params}, progress=(lambda i, n: bar.update(1)) if bar is not None else None)
        out["sanity"] = {name: _r(v) for name, v in run["scores"][method].items()}  # (steps, k)
        out["sanity_steps"] = run["steps"]
    out["params"] = {**explain.default_params(method), **params} if method in explain.METHODS else {}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _hardware() -> dict:
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "captum": _version("captum")}


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _write_json(path: Path, data: dict) -> None:
    from cifar.checkpoints import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, separators=(",", ":"))))


def run_scorecard(checkpoints: Path, data_dir: str | None, models: Sequence[str], settings: Settings, *,
                  work: Path, out: Path, command: str, methods: Sequence[str] | None = None,
                  quiet: bool = False) -> dict:
    """Score every method on every model; each (model, method) is saved in `work` as it finishes, so a
    rerun with the same settings continues where the last one stopped. Writes and returns the scorecard."""
    from dataclasses import asdict

    from tqdm import tqdm

    from cifar.checkpoints import RunFiles, load_model
    from cifar.data import describe_source, load_test_split
    from cifar.evaluate import load_evaluation

    methods = list(methods or methods_scored())
    images, labels, test_file = load_test_split(data_dir)
    source = describe_source(test_file)
    key = {"settings": asdict(settings), "data_md5": source["test_md5"]}
    card = {"format": FORMAT, "command": command, "settings": asdict(settings), "target": TARGET,
            "deletion_baseline": "black image (uint8 0): the default baseline of Integrated Gradients and Occlusion",
            "insertion_start": f"Gaussian blur, kernel {BLUR_KERNEL}, sigma {BLUR_SIGMA:g} px",
            "sanity_fail_threshold": SANITY_FAIL, "data": source, "hardware": _hardware(), "models": {}}
    for name in models:
        files = RunFiles(Path(checkpoints), name)
        net, meta = load_model(files.weights)
        ev = load_evaluation(files.weights)
        if len(ev["labels"]) != len(labels) or not np.array_equal(ev["labels"], labels):
            raise SystemExit(f"{files.evaluation} was not computed on {test_file}: its labels differ. "
                             f"Run python -m cifar.evaluate {files.weights} --data-dir <that folder> first.")
        norm = meta.get("normalization") or {}
        mean, std = tuple(norm.get("mean", MEAN)), tuple(norm.get("std", STD))
        idx = choose_sample(ev["labels"], ev["preds"], settings.images, settings.seed)
        targets = [int(p) for p in ev["preds"][idx]]
        x = torch.cat([explain.to_input(images[i], mean, std) for i in idx])
        entry = {"checkpoint": files.weights.name, "title": meta.get("title") or name,
                 "sample": {"indices": idx.tolist(), "labels": ev["labels"][idx].tolist(), "targets": targets,
                            "errors": int((ev["labels"][idx] != ev["preds"][idx]).sum())},
                 "blocks": [label for label, _ in randomisation_blocks(net)], "methods": {}}
        folder = Path(work) / name
        for method in methods:
            part = folder / f"{method.lower().replace(' ', '-')}.json"
            if part.is_file():
                saved = json.loads(part.read_text())
                if saved.get("key") == key:
                    entry["methods"][method] = saved["scores"]
                    if not quiet:
                        print(f"{name} · {method}: done before ({part})", file=sys.stderr)
                    continue
            # units: maps, then curves + infidelity, per image; sensitivity's images; cascade steps
            total = 2 * len(idx) + (0 if method == "Random" else min(settings.sensitivity_images, len(idx)))
            total += (len(entry["blocks"]) + 1) if settings.cascade_images else 0
            with tqdm(total=total, desc=f"{name} · {method}", disable=quiet, file=sys.stderr) as bar:
                scores = score_method(net, x, targets, method, settings, mean=mean, std=std, bar=bar)
            _write_json(part, {"key": key, "scores": scores})
            entry["methods"][method] = scores
        card["models"][name] = entry
    _write_json(Path(out), card)
    return card


def main(argv: list[str] | None = None) -> int:
    """`python -m cifar.scorecard`: the trust scorecard of the shipped models → checkpoints/trust_scorecard.json."""
    from cifar.models import list_models

    d = Settings()
    p = argparse.ArgumentParser(prog="python -m cifar.scorecard", description=main.__doc__)
    p.add_argument("--checkpoints", default="checkpoints", help="folder with <model>.safetensors and .eval.npz")
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: $CIFAR10_DIR or ./data)")
    p.add_argument("--models", nargs="+", default=list(list_models()), choices=list(list_models()))
    p.add_argument("--methods", nargs="+", default=None, choices=list(methods_scored()), metavar="METHOD",
                   help=f"default: all of {', '.join(methods_scored())}")
    p.add_argument("--out", default=None, help=f"default: <checkpoints>/{SCORECARD_FILE}")
    p.add_argument("--work", default="runs/scorecard", help="partial results, one file per (model, method): rerun to resume")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--quiet", action="store_true")
    for f in d.__dataclass_fields__.values():
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(d, f.name)), default=getattr(d, f.name))
    args = p.parse_args(argv)
    settings = Settings(**{f: getattr(args, f) for f in d.__dataclass_fields__})
    if settings.images < 2 or settings.steps < 1 or settings.batch < 1:
        p.error("--images must be at least 2, --steps and --batch at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python -m cifar.scorecard " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out) if args.out else Path(args.checkpoints) / SCORECARD_FILE
    t0 = time.perf_counter()
    card = run_scorecard(Path(args.checkpoints), args.data_dir, args.models, settings, work=Path(args.work), out=out,
                         command=command.strip(), methods=args.methods, quiet=args.quiet)
    if not args.quiet:
        for model in card["models"]:
            for row in summary_rows(card, model):
                print(model, row)
        print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------ reading a scorecard


def _mean(v) -> float | None:
    a = np.asarray(v, dtype=np.float64)
    return float(a.mean()) if a.size else None


def _median(v) -> float | None:
    a = np.asarray(v, dtype=np.float64)
    return float(np.median(a)) if a.size else None


def summary_rows(card: dict, model: str) -> list[dict]:
    """One row per method: mean deletion/insertion AUC, median infidelity, mean max-sensitivity, and the
    sanity scores (Spearman |attr|, SSIM) averaged over the images and the cascade's randomised steps,
    plus Spearman |attr| after the logits alone and after every block."""
    rows = []
    for method, m in card["models"][model]["methods"].items():
        sanity = m.get("sanity") or {}
        steps = np.asarray(sanity.get("spearman_abs", []), dtype=np.float64)  # (steps, images)
        ssim_steps = np.asarray(sanity.get("ssim", []), dtype=np.float64)
        ok = steps.ndim == 2 and len(steps) > 1
        rows.append({
            "method": method,
            "deletion_auc": _mean(m["deletion_auc"]),
            "insertion_auc": _mean(m["insertion_auc"]),
            "infidelity": _median(m["infidelity"]),
            "sensitivity": _mean(m["sensitivity"]),
            "spearman_abs": float(steps[1:].mean()) if ok else None,
            "spearman_abs_top": float(steps[1].mean()) if ok else None,
            "spearman_abs_all": float(steps[-1].mean()) if ok else None,
            "ssim": float(ssim_steps[1:].mean()) if ok else None,
        })
    return rows


def sanity_fails(row: dict) -> bool:
    """Whether a method's map survives randomisation (see SANITY_FAIL)."""
    return row["spearman_abs"] is not None and row["spearman_abs"] >= SANITY_FAIL


def beats(row: dict, reference: dict) -> dict[str, bool]:
    """Whether a method does better than a reference: lower deletion AUC, higher insertion AUC."""
    return {"deletion": row["deletion_auc"] < reference["deletion_auc"],
            "insertion": row["insertion_auc"] > reference["insertion_auc"]}


def verdict(card: dict, titles: dict[str, str] | None = None) -> list[str]:
    """The scorecard in plain sentences: who fails the sanity check, who beats the edge map."""
    titles = titles or {}
    lines = []
    for model in card["models"]:
        title = titles.get(model, model)
        rows = {r["method"]: r for r in summary_rows(card, model)}
        methods = [m for m in rows if m not in explain.REFERENCES]
        fail = [m for m in methods if sanity_fails(rows[m])]
        passed = [m for m in methods if rows[m]["spearman_abs"] is not None and not sanity_fails(rows[m])]
        if fail:
            detail = "; ".join(f"{m}: {rows[m]['spearman_abs_top']:.2f} with random logits, "
                               f"{rows[m]['spearman_abs_all']:.2f} with every block random" for m in fail)
            lines.append(f"**{title}**: {_join(fail)} {'fails' if len(fail) == 1 else 'fail'} the sanity check: "
                         f"as the layers are re-initialised from the logits down, {'its map keeps' if len(fail) == 1 else 'their maps keep'} "
                         f"ranking pixels like the trained model's (mean Spearman of |attribution| over the "
                         f"cascade ≥ {SANITY_FAIL:g}; {detail}), so {'it shows' if len(fail) == 1 else 'they show'} "
                         "the image more than the model.")
        if passed:
            lines.append(f"**{title}**: {_join(passed)} {'passes' if len(passed) == 1 else 'pass'} it "
                         f"(mean Spearman of |attribution| over the cascade < {SANITY_FAIL:g}).")
        sobel = rows.get("Sobel edges")
        if sobel is not None:
            both = [m for m in methods if all(beats(rows[m], sobel).values())]
            one = [m for m in methods if sum(beats(rows[m], sobel).values()) == 1]
            none = [m for m in methods if not any(beats(rows[m], sobel).values())]
            parts = []
            if both:
                parts.append(f"{_join(both)} beat{'s' if len(both) == 1 else ''} the Sobel edge map on both "
                             "deletion and insertion AUC")
            if one:
                parts.append(f"{_join(one)} on only one of the two")
            if none:
                parts.append(f"{_join(none)} on neither")
            lines.append(f"**{title}**: " + "; ".join(parts) + ".")
    return lines


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


if __name__ == "__main__":
    raise SystemExit(main())
