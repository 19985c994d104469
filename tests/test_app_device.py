"""The app's device: CPU unless $CIFAR_DEVICE says otherwise (auto, cuda, mps), and a clear notice where it is absent."""

from __future__ import annotations

import pytest
import torch

import cifar.runtime as runtime_mod
from cifar_app import store


def paths_of(reference_run, cifar_root) -> store.Paths:
    return store.Paths(reference_run, cifar_root)


def test_the_app_runs_on_the_cpu_by_default(monkeypatch, reference_run, cifar_root):
    monkeypatch.delenv(store.ENV_DEVICE, raising=False)
    net, meta = store.load_checkpoint("cnn", paths_of(reference_run, cifar_root))
    p = next(net.parameters())
    assert p.device.type == "cpu" and meta["model"] == "cnn"
    assert net.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_an_absent_device_is_a_notice_not_a_crash(monkeypatch, reference_run, cifar_root):
    monkeypatch.setattr(runtime_mod, "mps_available", lambda: False)
    monkeypatch.setenv(store.ENV_DEVICE, "mps")
    with pytest.raises(store.Unavailable, match="CIFAR_DEVICE=mps: device mps was asked for, but MPS is not available"):
        store.load_checkpoint("cnn", paths_of(reference_run, cifar_root))
