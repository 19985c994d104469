"""Where things run, decided in one place (cifar.runtime.Runtime.decide), and the GPU data path's logic on the CPU.

This machine has neither CUDA nor MPS: the choice logic is tested by making torch report what a
CUDA box or an Apple-silicon Mac would; the CUDA-resident augmentation is compared with the host's
where a GPU is present.
"""

from __future__ import annotations

import pytest
import torch

import cifar.runtime as runtime_mod
from cifar.data import augment
from cifar.runtime import Runtime, mps_hint


@pytest.fixture
def machine(monkeypatch):
    """Make torch report a machine with the given accelerators."""
    def set_up(cuda: bool = False, mps: bool = False, bf16: bool = True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(runtime_mod, "mps_available", lambda: mps)
    return set_up


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"),  # CUDA first, even on a machine that has both
    (True, False, "cuda"),
    (False, True, "mps"),  # then Apple's MPS
    (False, False, "cpu"),
])
def test_auto_tries_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert Runtime.decide("auto", "auto").device.type == expected


def test_mps_runs_fp32_in_nchw_and_keeps_its_training_set_in_host_memory(machine):
    machine(mps=True)
    for precision in ("auto", "bf16", "fp32"):
        rt = Runtime.decide("mps", precision)
        assert (rt.device.type, rt.precision, rt.channels_last) == ("mps", "fp32", False)
    assert rt.data_device.type == "cpu" and rt.grad_scaler() is None


def test_cuda_keeps_the_training_set_on_the_gpu(machine):
    machine(cuda=True, bf16=False)
    rt = Runtime.decide("cuda", "auto", index=1)
    assert rt.device == torch.device("cuda", 1) and rt.data_device == rt.device
    assert rt.precision == "float16" and rt.grad_scaler() is not None
    assert Runtime.decide("cpu", "fp32").data_device.type == "cpu"


@pytest.mark.parametrize("device, message", [
    ("mps", "MPS is not available here"),
    ("cuda", "CUDA is not available here"),
    ("tpu", "unknown device 'tpu'"),
])
def test_an_absent_device_is_a_clear_error(machine, device, message):
    machine()
    with pytest.raises(ValueError, match=message):
        Runtime.decide(device)


def test_a_missing_mps_op_becomes_advice():
    err = NotImplementedError("The operator 'aten::_upsample_bilinear2d_aa.out' is not currently implemented for "
                              "the MPS device. If you want this op to be added ...")
    hint = mps_hint(err)
    assert "aten::_upsample_bilinear2d_aa.out" in hint and "PYTORCH_ENABLE_MPS_FALLBACK=1" in hint
    assert "--device cpu" in hint
    assert mps_hint(NotImplementedError("something else")) is None
    assert mps_hint(ValueError("MPS")) is None


def test_train_and_evaluate_offer_every_device():
    from cifar.config import TrainConfig
    from cifar.evaluate import main as evaluate_main
    from dataclasses import fields

    device = next(f for f in fields(TrainConfig) if f.name == "device")
    assert device.metadata["choices"] == runtime_mod.DEVICES == ("auto", "cpu", "cuda", "mps")
    with pytest.raises(SystemExit):
        evaluate_main(["--checkpoint", "x.safetensors", "--device", "gpu"])


def test_augment_draws_its_numbers_on_the_generator_not_the_images_device():
    # The epoch is built where the images are (the GPU under CUDA); the crops and flips must not
    # depend on that, so they are drawn from the CPU generator and only the 3 numbers per image move.
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    a = augment(x, torch.Generator().manual_seed(7))
    b = augment(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.device == x.device
    if torch.cuda.is_available():
        on_gpu = augment(x.cuda(), torch.Generator().manual_seed(7))
        assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), a)
