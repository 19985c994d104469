"""Device, precision, memory format and seeding: decided once, here."""

from __future__ import annotations

import contextlib
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch


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
    def decide(cls, device: str = "auto", precision: str = "auto") -> Runtime:
        """auto: CUDA if present; bf16 autocast + channels_last on a bf16 CPU (3-5× faster than fp32 here)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda was asked for, but CUDA is not available here; use --device cpu or auto")
        dev = torch.device(device)
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
