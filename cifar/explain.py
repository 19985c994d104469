"""Explanations: forward-hook feature maps (one context manager) and Captum attributions.

Everything here is pure (tensors in, numpy out) and Streamlit-free, so the app can cache it.

Three rules keep the hooks honest (the pytorch-grad-cam lessons, see STYLE.md):

- Every hook this module registers lives inside `capture`, which removes every handle on exit, even
  on exceptions. Captum's own hooks (Guided Backprop, Grad-CAM) are removed by Captum; `attribute`
  checks afterwards, and `count_hooks` lets tests prove nothing leaks.
- Feature maps and attributions run on a private *explanation copy* of the model (deep copy, eval
  mode, fp32, every ReLU with `inplace=False`, no parameter gradients), cached per model. The
  models use `ReLU(inplace=True)`, which breaks Guided Backprop and would overwrite a captured BN
  output with its ReLU'd version; the copy also means the app's own model is never hooked or put
  into another mode while another session uses it.
- One lock serialises work on the copies: Streamlit serves sessions from threads that share a
  cached model, and a Guided Backprop hook must not leak into another session's Saliency.
"""

from __future__ import annotations

import contextlib
import copy
import operator
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from cifar import MEAN, STD
from cifar.models import BasicBlock, spec_of

BASELINES = ("black", "zero")
# Images per forward/backward pass inside IG, SmoothGrad and Occlusion. It sets the app's memory
# peak: IG (50 steps) on ResNet18 raised the process's peak RSS by 307 MB in batches of 64, 111 MB
# in 16 and 65 MB in 8 on an AVX2 CPU (1.0 s at 16, 1.4 s at 8), and by 104 and 82 MB on an
# AVX-512 BF16 one (0.34 and 0.36 s; SmoothGrad 100 → 73 MB, Occlusion 65 → 43 MB; torch 2.13.0+cpu,
# 2 cores, VmHWM around the call). 8 keeps a hosted demo's peak with 8 sessions under its 690 MB tier.
MAX_BATCH = 8
# Modules whose output a student wants to look at (when it is a 4D map bigger than 1×1).
_LEAF_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d)

_LOCK = threading.RLock()


# ---------------------------------------------------------------------------------------- hooks


def count_hooks(model: nn.Module) -> int:
    """Hooks registered on the model's modules: forward, forward-pre, backward and backward-pre.

    A superset of `sum(len(m._forward_hooks))`: Captum's Guided Backprop registers forward-pre hooks
    too, so counting only forward hooks could miss a leak.
    """
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


def _candidates(model: nn.Module) -> list[str]:
    """Names of the modules `feature_layers` considers, in registration order (no forward pass)."""
    blocks = (BasicBlock,)
    names = []
    for parent_name, parent in model.named_modules():
        for child_name, child in parent.named_children():
            # BasicBlock calls its one `relu` twice; its block output is listed instead.
            shared_relu = isinstance(parent, blocks) and isinstance(child, nn.ReLU)
            if (isinstance(child, _LEAF_TYPES) and not shared_relu) or isinstance(child, blocks):
                names.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    return names


def _module(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not name or name not in modules:
        raise KeyError(f"{type(model).__name__} has no layer {name!r}; layers include: {', '.join(_candidates(model))}")
    return modules[name]


@contextlib.contextmanager
def capture(model: nn.Module, layer_names: str | Iterable[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Hook the named layers; yield a dict name → output (detached, CPU, float32) filled by forward passes.

    Every handle is removed on exit, even when the block raises. Each hook copies its output at
    once, so a later in-place op (ReLU(inplace=True) after BN, the residual `out += identity`)
    cannot change what was captured. A module called twice per forward (torchvision's BasicBlock
    reuses one `relu`) keeps its last call, which is the block output. Forward passes from other
    threads are ignored, so a shared model can be captured while another session predicts.
    """
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    modules = {name: _module(model, name) for name in names}  # raises before any hook exists
    owner = threading.get_ident()
    captured: dict[str, torch.Tensor] = {}
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs, output) -> None:
            if threading.get_ident() != owner:
                return
            out = output[0] if isinstance(output, (tuple, list)) else output
            captured[name] = out.detach().to(
                "cpu", torch.float32, copy=True, memory_format=torch.contiguous_format
            )

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """model.eval() for the block, then the previous mode back (a no-op for the app's eval models)."""
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()


# ------------------------------------------------------------------------------ the private copy

_COPIES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]] = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> tuple:
    # Storage address and in-place version of every weight: load_state_dict, an optimizer step or a
    # .to() all change one of them, so a stale copy is rebuilt rather than silently explained.
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


def _explainer(model: nn.Module) -> nn.Module:
    """The model's explanation copy: eval, fp32, no in-place ReLU, no parameter gradients, no hooks."""
    key = _fingerprint(model)
    cached = _COPIES.get(model)
    if cached is not None and cached[0] == key and count_hooks(cached[1]) == 0:
        return cached[1]
    # The copy shares the weights' memory (ResNet18: 45 MB, CustomCNN: 18 MB not duplicated; the
    # server's 8-session peak fell by 59 MB, scripts/bench_memory.py): its parameters are new Parameter
    # objects over the same storage, without requires_grad, so hooks, eval mode and inplace=False stay
    # private to the copy. .float() and channels_last copy only what is not fp32 NHWC already.
    memo = {id(t): nn.Parameter(t.detach(), requires_grad=False) if isinstance(t, nn.Parameter) else t.detach()
            for t in (*model.parameters(), *model.buffers())}
    # channels_last: oneDNN's convolutions are faster in NHWC (IG on ResNet18 ~20% faster here).
    twin = copy.deepcopy(model, memo).float().eval().to(memory_format=torch.channels_last)
    for m in twin.modules():
        # deepcopy also copies hooks someone left on the original; the copy starts clean.
        for hooks in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks):
            hooks.clear()
        if isinstance(m, nn.ReLU):
            m.inplace = False
    twin.requires_grad_(False)
    _COPIES[model] = (key, twin)
    return twin


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _as_batch(x: torch.Tensor, model: nn.Module, *, single: bool) -> torch.Tensor:
    """(3,H,W) or (N,3,H,W) float → (N,3,H,W) fp32 on the model's device, in its memory format."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a normalised image batch of shape (N, 3, H, W), got {tuple(x.shape)}")
    if single and x.shape[0] != 1:
        raise ValueError(f"expected one image (1, 3, H, W), got a batch of {x.shape[0]}")
    if x.dtype == torch.uint8:
        raise TypeError("expected a normalised float image; apply cifar.data.normalize to uint8 first")
    x = x.detach().to(_device(model), torch.float32)
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is not None and conv.weight.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def to_input(image: np.ndarray, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """One uint8 (H, W, 3) image → (1, 3, H, W) float normalised with the checkpoint's (mean, std)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    # (x/255 - mean)/std as one scale and shift: for the report's (0.5, 0.5) these are 2/255 and 1,
    # bit for bit what cifar.data.normalize computes in training.
    scale = torch.tensor([1.0 / (255.0 * v) for v in std]).view(1, -1, 1, 1)
    shift = torch.tensor([m / v for m, v in zip(mean, std)]).view(1, -1, 1, 1)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    return (x * scale - shift).contiguous()


# ---------------------------------------------------------------------------------- predictions


def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities (N, classes) float32 for a normalised batch, in eval mode without grad."""
    x = _as_batch(x, model, single=False)
    with torch.no_grad(), _eval_mode(model):
        probs = [torch.softmax(model(chunk).float(), dim=1) for chunk in x.split(batch_size)]
    return torch.cat(probs).cpu().numpy()


# ---------------------------------------------------------------------------------- feature maps


def _trace(model: nn.Module, input_size: tuple[int, int, int]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every candidate layer, in the order a forward pass reaches them."""
    twin = _explainer(model)
    with capture(twin, _candidates(twin)) as acts, torch.no_grad():
        twin(torch.zeros(1, *input_size, device=_device(twin)))
    # `acts` keeps the order the hooks first fired in (a block after its convs), not registration order.
    return [(n, tuple(a.shape[1:])) for n, a in acts.items()]


def layer_shapes(model: nn.Module, *, input_size: tuple[int, int, int] = (3, 32, 32)) -> dict[str, tuple[int, int, int]]:
    """Output shape (C, H, W) of each layer in `feature_layers`, from one forward pass of zeros."""
    with _LOCK:
        return {n: s for n, s in _trace(model, input_size) if len(s) == 3 and s[1] * s[2] > 1}


def feature_layers(model: nn.Module, *, input_size: tuple[int, int, int] = (3, 32, 32)) -> dict[str, nn.Module]:
    """Layers worth showing as feature maps, in forward order, by the model's own module names.

    Every Conv2d, BatchNorm2d, ReLU and pooling layer whose output is a 4D map larger than 1×1,
    plus each ResNet block ("layer1.0" … "layer4.1", the block output after its final ReLU). The
    ReLU that a BasicBlock shares between its two calls is left out (its block is listed), and so
    are the ResNet stage containers "layer1"…"layer4": they equal their last block, though
    `capture`/`feature_maps` accept them too. The 512×1×1 avgpool and the linear head are left out.
    """
    modules = dict(model.named_modules())
    return {name: modules[name] for name in layer_shapes(model, input_size=input_size)}


def layer_label(name: str, module: nn.Module, shape: Sequence[int] | None = None) -> str:
    """A picker label such as "conv1.0 · Conv2d 3→64, 3×3" or "layer3.0 · BasicBlock 128→256, stride 2 → 256×8×8"."""
    kind = type(module).__name__
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size
        detail = f"{module.in_channels}→{module.out_channels}, {k[0]}×{k[1]}"
        if module.stride != (1, 1):
            detail += f", stride {module.stride[0]}"
        if ".downsample." in f".{name}.":
            detail += " (shortcut)"
    elif isinstance(module, nn.BatchNorm2d):
        detail = str(module.num_features)
    elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = module.kernel_size
        detail = f"{k}×{k}" if isinstance(k, int) else f"{k[0]}×{k[1]}"
    elif isinstance(module, BasicBlock):
        detail = f"{module.conv1.in_channels}→{module.conv2.out_channels}"
        if module.conv1.stride != (1, 1):
            detail += f", stride {module.conv1.stride[0]}"
    else:
        detail = ""
    label = f"{name} · {kind} {detail}".rstrip()
    if shape is not None:
        label += " → " + "×".join(str(int(s)) for s in shape)
    return label


@dataclass(frozen=True)
class FeatureMaps:
    """One layer's activations for one image, strongest channel first.

    Channels are ranked by mean activation over H×W (signed, the raw value): after a ReLU or pool
    that is how much the channel fires; for a conv or BN layer a channel pushed far below zero
    ranks last, which is what the following ReLU would zero out. Ties keep channel order.
    """

    layer: str
    maps: np.ndarray  # (C', H, W) float32, C' = top or all channels, sorted by strength
    order: np.ndarray  # (C',) int64: the original channel index of each map
    strength: np.ndarray  # (C',) float32: mean activation of each map, descending
    shape: tuple[int, int, int]  # the layer's full output shape (C, H, W)


def feature_maps(model: nn.Module, x: torch.Tensor, layer_name: str, top: int | None = None) -> FeatureMaps:
    """The named layer's activation maps for one normalised image (1, 3, H, W), strongest first."""
    with _LOCK:
        twin = _explainer(model)
        x = _as_batch(x, twin, single=True)
        with capture(twin, layer_name) as acts, torch.no_grad():
            twin(x)
    act = acts[layer_name]
    if act.ndim != 4:
        raise ValueError(f"layer {layer_name!r} outputs shape {tuple(act.shape)}, not a (C, H, W) map")
    maps = act[0].numpy()
    strength = maps.mean(axis=(1, 2))
    order = np.argsort(-strength, kind="stable")
    if top is not None:
        order = order[: max(int(top), 0)]
    return FeatureMaps(
        layer=layer_name,
        maps=np.ascontiguousarray(maps[order]),
        order=order.astype(np.int64),
        strength=strength[order].astype(np.float32),
        shape=tuple(int(s) for s in maps.shape),
    )


# ---------------------------------------------------------------------------------- attributions


@dataclass(frozen=True)
class Param:
    """One setting of an attribution method: its keyword, default, and what a widget needs to offer it.

    Numbers get a slider from `low` to `high`; `choices` get a radio (`choice_labels` in the same
    order); kind "layer" is a layer name, whose options depend on the model (the app lists them).
    `minimum` is the hard floor `attribute` enforces (the slider may start higher).
    """

    name: str
    label: str
    default: object
    kind: Literal["int", "float", "choice", "layer"] = "int"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    choice_labels: tuple[str, ...] = ()
    help: str = ""


@dataclass(frozen=True)
class Method:
    """A registered attribution method: how to run it, its settings and how to read its map."""

    name: str
    help: str  # one line for the picker's help
    signed: bool  # False when the map is never negative (Grad-CAM is ReLU'd)
    params: tuple[Param, ...]
    run: Callable[..., torch.Tensor]  # (twin, x, target, **params) → (1, C, H, W) attribution
    channels: Literal["sum", "mean"] = "sum"  # how the map is reduced over the colour channels
    gradient: bool = True  # whether the method differentiates the input (Occlusion only runs forward passes)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def uses_baseline(self) -> bool:
        return "baseline" in self.param_names


METHODS: dict[str, Method] = {}

_BASELINE = Param("baseline", "Baseline", "black", kind="choice", choices=BASELINES,
                  choice_labels=("black image", "mid-grey (0)"),
                  help="what 'absent' means: a black image, or mid-grey (0 in normalised units)")


def register_method(name: str, *, help: str, signed: bool = True, params: tuple[Param, ...] = (),
                    channels: Literal["sum", "mean"] = "sum", gradient: bool = True) -> Callable:
    """Decorator: register an attribution function under `name`. The page's widgets and the tests
    are built from the registry, so a new method is this decorator on one function."""
    def wrap(run: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        if name in METHODS:
            raise ValueError(f"attribution method {name!r} is registered twice")
        METHODS[name] = Method(name, help, signed, params, run, channels, gradient)
        return run

    return wrap


def get_method(name: str) -> Method:
    """A registered method; ValueError names the valid ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def method_params(method: str, **params: object) -> dict[str, object]:
    """Only the parameters `method` reads (None dropped), so changing another one reuses a cache."""
    names = get_method(method).param_names
    return {k: params[k] for k in names if k in params and params[k] is not None}


def default_params(method: str) -> dict[str, object]:
    """The method's defaults (a layer parameter is left to `default_gradcam_layer`)."""
    return {p.name: p.default for p in get_method(method).params if p.default is not None}


@register_method("Integrated Gradients",
                 help="gradients averaged along a straight path from a baseline image to this one; the map "
                      "sums to logit(image) − logit(baseline)",
                 params=(Param("steps", "Steps", 50, low=8, high=200, step=2, minimum=1,
                               help="points on the path (Gauss-Legendre); more is smoother and slower"), _BASELINE))
def _integrated_gradients(twin: nn.Module, x: torch.Tensor, target: int, *, steps: int, baseline: torch.Tensor):
    from captum.attr import IntegratedGradients

    return IntegratedGradients(twin).attribute(x, baselines=baseline, target=target, n_steps=int(steps),
                                               internal_batch_size=max(min(int(steps), MAX_BATCH), len(x)))  # ≥ the batch, or Captum warns


@register_method("Saliency", help="the gradient of the logit with respect to each pixel")
def _saliency(twin: nn.Module, x: torch.Tensor, target: int):
    from captum.attr import Saliency

    return Saliency(twin).attribute(x, target=target, abs=False)


@register_method("SmoothGrad", help="the gradient averaged over noisy copies of the image",
                 params=(Param("n_samples", "Noisy samples", 20, low=4, high=64, minimum=1),
                         Param("stdev", "Noise std (normalised units; the input spans 2.0)", 0.15, kind="float",
                               low=0.01, high=0.5, step=0.01)))
def _smoothgrad(twin: nn.Module, x: torch.Tensor, target: int, *, n_samples: int, stdev: float):
    from captum.attr import NoiseTunnel, Saliency

    return NoiseTunnel(Saliency(twin)).attribute(
        x, nt_type="smoothgrad", nt_samples=int(n_samples), nt_samples_batch_size=min(int(n_samples), MAX_BATCH),
        stdevs=float(stdev), target=target, abs=False)


@register_method("Guided Backprop", help="gradients with negative ReLU gradients zeroed")
def _guided_backprop(twin: nn.Module, x: torch.Tensor, target: int):
    from captum.attr import GuidedBackprop

    return GuidedBackprop(twin).attribute(x, target=target)


@register_method("Grad-CAM", help="a layer's channels weighted by their mean gradient, upsampled (≥ 0)", signed=False,
                 params=(Param("layer", "Grad-CAM layer", None, kind="layer",
                               help="default: the model's last 8×8 stage"),))
def _gradcam(twin: nn.Module, x: torch.Tensor, target: int, *, layer: str):
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(twin, _module(_inner(twin), layer)).attribute(x, target=target, relu_attributions=True)
    if cam.ndim != 4:
        raise ValueError(f"Grad-CAM needs a layer with a (C, H, W) output; {layer!r} has {tuple(cam.shape)}")
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")


@register_method("Occlusion", help="how much the logit drops when a square patch is set to the baseline",
                 params=(Param("window", "Window (pixels)", 8, low=2, high=16, minimum=1),
                         Param("stride", "Stride (pixels)", 4, low=1, high=8, minimum=1), _BASELINE),
                 channels="mean", gradient=False)  # all 3 channels of a patch are occluded together, so they are equal
def _occlusion(twin: nn.Module, x: torch.Tensor, target: int, *, window: int, stride: int, baseline: torch.Tensor):
    from captum.attr import Occlusion

    size = tuple(x.shape[-2:])
    w, s = min(int(window), *size), int(stride)
    n_windows = ((size[0] - w) // s + 1) * ((size[1] - w) // s + 1)
    return Occlusion(twin).attribute(x, sliding_window_shapes=(3, w, w), strides=(3, s, s), baselines=baseline,
                                     target=target, perturbations_per_eval=min(n_windows, MAX_BATCH))


def default_gradcam_layer(model: nn.Module) -> str:
    """Grad-CAM's layer: the registered model's default (ResNet18 "layer3", CustomCNN "conv3.2", both
    8×8), else the last map at least 8×8."""
    spec = spec_of(model)
    if spec is not None and spec.gradcam_layer in dict(model.named_modules()):
        return spec.gradcam_layer
    shapes = layer_shapes(model)
    big = [n for n, (_, h, w) in shapes.items() if min(h, w) >= 8]
    if not big:
        raise ValueError(f"{type(model).__name__} has no 4D layer to run Grad-CAM on")
    return big[-1]


def baseline_image(kind: str, x: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """The baseline for x in normalised units: "black" = uint8 0 under (mean, std); "zero" = 0 (mid-grey
    for the report's [-1, 1] normalisation)."""
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; valid baselines: {', '.join(BASELINES)}")
    if kind == "zero":
        return torch.zeros_like(x)
    black = -torch.as_tensor(mean, dtype=x.dtype) / torch.as_tensor(std, dtype=x.dtype)
    return black.view(1, -1, 1, 1).to(x.device).expand_as(x).contiguous(memory_format=torch.channels_last)


def _num_classes(model: nn.Module) -> int | None:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else None


class _Contrast(nn.Module):
    """logit_a − logit_b as a one-column output: the target "why A and not B" for every method.

    Captum explains output column 0 of this wrapper; the wrapped model's modules stay its own (Grad-CAM
    hooks its layer, Guided Backprop its ReLUs), so every method sees the gradient of the difference.
    """

    def __init__(self, net: nn.Module, a: int, b: int):
        super().__init__()
        self.net, self.a, self.b = net, int(a), int(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return (z[:, self.a] - z[:, self.b]).unsqueeze(1)


def _inner(net: nn.Module) -> nn.Module:
    """The model a method's layer names refer to (through a contrastive wrapper)."""
    return net.net if isinstance(net, _Contrast) else net


def _class_index(value: object, n_classes: int | None, what: str) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer class index, got {value!r}") from None
    if value < 0 or (n_classes is not None and value >= n_classes):
        raise ValueError(f"{what} must be a class index in 0..{(n_classes or 1) - 1}, got {value}")
    return value


def attribute(model: nn.Module, x: torch.Tensor, target: int, method: str, *,
              mean: Sequence[float] = MEAN, std: Sequence[float] = STD, contrast: int | None = None,
              **params: object) -> np.ndarray:
    """A signed (H, W) float32 attribution map of the target logit for one normalised image (1, 3, H, W).

    `params` are the method's settings (its registry entry lists them, with defaults); settings the
    method does not read are ignored. Channels are summed (per-channel attributions of a pixel add up,
    so Integrated Gradients keeps its completeness: the map sums to logit(x) - logit(baseline));
    Occlusion, whose channels are equal, takes their mean. `mean`/`std`: the normalisation x was made
    with (the checkpoint's metadata), which decides what a black baseline is.

    `contrast`: a class B ≠ target. The map then explains "why target and not B": the attribution of
    logit_target − logit_B (for Grad-CAM, the gradient of that difference; Integrated Gradients' map
    sums to the difference at x minus the difference at the baseline).

    - Integrated Gradients: `steps` Gauss-Legendre steps from the baseline image, batched.
    - Saliency: the signed gradient (abs=False); summed over channels it is d logit / d brightness.
    - SmoothGrad: the mean signed gradient over `n_samples` copies with Gaussian noise of std
      `stdev` in normalised units (the input spans 2.0, so 0.15 is 7.5% of the range).
    - Guided Backprop: gradients with negative ReLU gradients zeroed.
    - Grad-CAM: on `layer` (default `default_gradcam_layer`), ReLU'd as in the paper, so ≥ 0,
      bilinearly upsampled to the input size.
    - Occlusion: logit drop when a `window`×`window` patch (all 3 channels) is set to the baseline,
      sliding by `stride`, averaged over the patches covering each pixel.
    """
    return _attribute(model, x, target, method, mean=mean, std=std, contrast=contrast, single=True, params=params)[0]


def attribute_batch(model: nn.Module, x: torch.Tensor, targets: Sequence[int] | torch.Tensor, method: str, *,
                    mean: Sequence[float] = MEAN, std: Sequence[float] = STD, **params: object) -> np.ndarray:
    """`attribute` for a batch (N, 3, H, W) with one target class per image → (N, H, W) float32 maps.

    The same maps as N calls of `attribute` (up to float summation order), in fewer passes: the
    scorecard (cifar.trust) and Captum's sensitivity_max call it.
    """
    n_classes = _num_classes(model)
    targets = [_class_index(t, n_classes, "target") for t in torch.as_tensor(targets).reshape(-1).tolist()]
    return _attribute(model, x, targets, method, mean=mean, std=std, contrast=None, single=False, params=params)


def _attribute(model: nn.Module, x: torch.Tensor, target: int | list[int], method: str, *, mean, std,
               contrast: int | None, single: bool, params: dict) -> np.ndarray:
    spec = get_method(method)
    n_classes = _num_classes(model)
    if single:
        target = _class_index(target, n_classes, "target")
    if contrast is not None:
        contrast = _class_index(contrast, n_classes, "contrast")
        if contrast == target:
            raise ValueError(f"contrast must be another class than the target ({target}): "
                             "'why A and not A' has no answer")
    settings = {**default_params(method), **method_params(method, **params)}
    for p in spec.params:
        value = settings.get(p.name)
        if p.minimum is not None and value is not None and float(value) < p.minimum:
            raise ValueError(f"{p.name} must be at least {p.minimum:g}, got {value}")
        if p.kind == "choice" and value not in p.choices:
            raise ValueError(f"unknown {p.name} {value!r}; valid: {', '.join(p.choices)}")

    with _LOCK:
        twin = _explainer(model)
        x = _as_batch(x, twin, single=single)
        if not single and len(target) != x.shape[0]:
            raise ValueError(f"expected one target per image: {x.shape[0]} images, {len(target)} targets")
        if "baseline" in settings:
            settings["baseline"] = baseline_image(str(settings["baseline"]), x, mean, std)
        if any(p.kind == "layer" for p in spec.params) and not settings.get("layer"):
            settings["layer"] = default_gradcam_layer(model)
        net, goal = (twin, target) if contrast is None else (_Contrast(twin, target, contrast), 0)
        if isinstance(goal, list):
            goal = torch.tensor(goal, device=x.device)
        try:
            with warnings.catch_warnings():
                # Captum announces its own (temporary) ReLU hooks and input grads on every call.
                warnings.filterwarnings("ignore", message=".*backward hooks on ReLU.*")
                warnings.filterwarnings("ignore", message=".*required_grads has been set automatically.*")
                if spec.gradient:
                    x = x.clone().requires_grad_(True)
                attr = spec.run(net, x, goal, **settings)
            attr = attr.mean(1) if spec.channels == "mean" else attr.sum(1)
            return attr.detach().cpu().numpy().astype(np.float32)
        finally:
            if count_hooks(twin):
                # A hook survived (a Captum bug or an interrupt): drop the copy, build a clean one next time.
                _COPIES.pop(model, None)


# ------------------------------------------------------------------------ reference maps (no model)

# Two maps that do not look at the model, for the scorecard (cifar.trust): a method that cannot beat
# them on faithfulness, or that stays as unchanged as they do when the model is randomised, tells
# you about the image rather than the model.
REFERENCES = ("Random", "Sobel edges")


def reference_maps(name: str, x: torch.Tensor, *, seed: int = 0, mean: Sequence[float] = MEAN,
                   std: Sequence[float] = STD) -> np.ndarray:
    """(N, H, W) float32 maps for a normalised batch: "Random" = seeded N(0, 1) noise, a random pixel
    order; "Sobel edges" = the Sobel gradient magnitude of the image's brightness (pixels in [0, 1])."""
    x = torch.as_tensor(x).detach().float().cpu()
    if x.ndim == 3:
        x = x.unsqueeze(0)
    n, _, h, w = x.shape
    if name == "Random":
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(n, h, w, generator=g).numpy()
    if name == "Sobel edges":
        pixels = x * torch.as_tensor(std).view(1, -1, 1, 1) + torch.as_tensor(mean).view(1, -1, 1, 1)
        gray = torch.nn.functional.pad(pixels.mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        k = torch.stack([kx, kx.T]).unsqueeze(1)  # (2, 1, 3, 3): d/dx and d/dy
        grad = torch.nn.functional.conv2d(gray, k)
        return grad.pow(2).sum(1).sqrt().numpy().astype(np.float32)
    raise ValueError(f"unknown reference map {name!r}; valid: {', '.join(REFERENCES)}")


def to_display(attr: np.ndarray, mode: Literal["signed", "absolute"] = "signed", *, percentile: float = 99.0) -> np.ndarray:
    """Scale an attribution map for display: signed → [-1, 1], absolute → |attr| in [0, 1].

    Divides by the `percentile` of |attr| rather than the max, so a few extreme pixels do not wash
    out the rest; values beyond it are clipped. An all-zero (or non-finite) map stays zero.
    """
    if mode not in ("signed", "absolute"):
        raise ValueError(f"mode must be 'signed' or 'absolute', got {mode!r}")
    a = np.nan_to_num(np.asarray(attr, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    scale = float(np.percentile(np.abs(a), percentile)) if a.size else 0.0
    if scale <= 0:
        scale = float(np.abs(a).max()) if a.size else 0.0
    if scale <= 0:
        return np.zeros_like(a)
    a = a / scale
    return np.clip(np.abs(a), 0.0, 1.0) if mode == "absolute" else np.clip(a, -1.0, 1.0)
