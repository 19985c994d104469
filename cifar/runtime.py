"""Device, precision, memory format and seeding: decided once, here."""

from __future__ import annotations

import contextlib
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda", "mps")  # --device choices of every command; the order `auto` tries is cuda, mps, cpu
# torch reads this once, when it is imported: set, an op that MPS lacks runs on the CPU with a warning
# that names it; unset, the op raises NotImplementedError (mps_hint turns that into advice).
MPS_FALLBACK_ENV = "PYTORCH_ENABLE_MPS_FALLBACK"


def mps_available() -> bool:
    """True on an Apple-silicon Mac whose torch was built with MPS."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def mps_hint(error: BaseException) -> str | None:
    """Advice for an op that MPS lacks (torch's NotImplementedError), None for any other error."""
    text = str(error)
    if not isinstance(error, NotImplementedError) or "MPS" not in text:
        return None
    op = text.split("'")[1] if text.count("'") >= 2 else "an operator"
    return (f"{op} is not implemented on Apple's MPS in torch {torch.__version__}. Rerun with "
            f"{MPS_FALLBACK_ENV}=1 in the environment (that op then runs on the CPU), or with --device cpu.")


def cpu_name() -> str:
    """The CPU's model name (Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """True where the CPU runs bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors run. Build it with `Runtime.decide`."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None = full fp32
    channels_last: bool

    @classmethod
    def decide(cls, device: str = "auto", precision: str = "auto", index: int | None = None) -> Runtime:
        """auto: CUDA, then Apple's MPS, then the CPU; bf16 autocast + channels_last on a bf16 CPU
        (3-5× faster than fp32 here). index: the CUDA device of this process (a DDP rank's local rank)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
        if device not in DEVICES[1:]:
            raise ValueError(f"unknown device {device!r}; use {', '.join(DEVICES)}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda was asked for, but CUDA is not available here; use --device cpu or auto")
        if device == "mps" and not mps_available():
            raise ValueError("device mps was asked for, but MPS is not available here (it needs an Apple-silicon "
                             "Mac and a torch build with MPS); use --device cpu or auto")
        dev = torch.device(device, index) if device == "cuda" and index is not None else torch.device(device)
        if dev.type == "mps":
            # The small path: fp32 in NCHW. MPS autocast and channels_last cover fewer ops than
            # CUDA's, and an op MPS lacks runs on the CPU instead (see MPS_FALLBACK_ENV).
            return cls(dev, None, False)
        # channels_last everywhere: oneDNN's CPU convolutions are faster in NHWC even in fp32
        # (measured on the 2-core AVX2 dev machine: CustomCNN 256 vs 235 img/s at batch 32).
        if precision == "fp32":
            return cls(dev, None, True)
        if dev.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return cls(dev, dtype, True)
        # Without AVX-512 BF16 / AMX, bf16 is emulated: 16 img/s instead of 256 on the AVX2 machine.
        if precision == "bf16" or cpu_has_bf16():
            return cls(dev, torch.bfloat16, True)
        return cls(dev, None, True)

    @property
    def data_device(self) -> torch.device:
        """Where the training set and its augmentation live: on the GPU for CUDA (no host copy per
        step), else in host memory (MPS shares it with the CPU; the CPU trains there anyway)."""
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    @property
    def precision(self) -> str:
        return "fp32" if self.autocast_dtype is None else str(self.autocast_dtype).removeprefix("torch.")

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context for forward passes. fp32 means IEEE fp32: on CUDA, cuDNN would
        otherwise run fp32 convolutions in TF32 (10-bit mantissa), a silent precision drop."""
        if self.autocast_dtype is None:
            return _strict_fp32() if self.device.type == "cuda" else contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def scoring(self) -> Runtime:
        """The runtime for the test predictions a checkpoint ships with: fp32 on the same device.

        Training may run in bf16, but the stored test accuracy must be one that `cifar.evaluate`
        reproduces anywhere, a CPU without native bf16 included, where bf16 is emulated and slow.
        """
        return Runtime(self.device, None, self.channels_last)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for fp16 autocast (GPUs without bf16), where small gradients would underflow
        to zero; None for bf16 and fp32, which have fp32's exponent range and need none."""
        if self.autocast_dtype != torch.float16:
            return None
        return torch.amp.GradScaler(self.device.type)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def describe(self) -> str:
        """Hardware in words, for checkpoint metadata."""
        if self.device.type == "cuda":
            hw = torch.cuda.get_device_name(self.device)
        elif self.device.type == "mps":
            hw = f"Apple MPS ({cpu_name()})"
        else:
            hw = f"{cpu_name()}, {torch.get_num_threads()} threads"
        return f"{hw}; {self.precision}{', channels_last' if self.channels_last else ''}; torch {torch.__version__}"


@contextlib.contextmanager
def _strict_fp32():
    """Turn TF32 off for cuDNN convolutions and CUDA matmuls inside the block; restore afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (initial weights and dropout come from torch's global generator)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
