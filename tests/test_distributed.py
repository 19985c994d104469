"""DDP under torchrun: two gloo ranks on the CPU train what one process trains with the same global batch.

Real processes, started as a user would: `torchrun --standalone --nproc-per-node 2 -m ...`. The model
is devkit's tiny BatchNorm-free one, so BatchNorm (per-rank statistics by design) adds no difference.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar.checkpoints import read_metadata
# Imported before the tiny model is registered, so the CLI's --model choices never include it.
from cifar.config import config_from_args
from cifar.data import load_cifar10, make_splits
from cifar.distributed import Distributed
from cifar.train import build_parser, fit
from devkit.fake_cifar import VAL_SIZE

REPO = Path(__file__).resolve().parents[1]
ENTRY = ["-m", "devkit.tiny_model"]  # cifar.train, with the test-only tiny model registered
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def tiny_train_args(data_dir, out_dir, epochs: int, *extra: str) -> list[str]:
    # fp32 on the CPU, no dropout (its masks are drawn per rank), 64 images in 4 global batches of 16.
    return ["--model", "tiny", "--data-dir", str(data_dir), "--out-dir", str(out_dir), "--device", "cpu",
            "--precision", "fp32", "--val-size", str(VAL_SIZE), "--limit-train", "64", "--batch-size", "16",
            "--eval-batch-size", "100", "--dropout", "0", "--epochs", str(epochs), "--quiet", *extra]


def start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def train_here(argv: list[str]) -> bool:
    """One process: cifar.train's fit here (one thread, as each rank), with the tiny model registered
    for the duration of the call only."""
    from devkit import tiny_model

    tiny_model.register()
    try:
        # This process's --model choices were read before the tiny model existed: parse as the CNN
        # (the tiny model's recipes are copies of the CNN's), then swap the model.
        args = build_parser().parse_args([a for a in argv if a not in ("--model", "tiny")])
        cfg = dataclasses.replace(config_from_args(args), model="tiny")
        splits = make_splits(load_cifar10(args.data_dir), cfg.val_size, cfg.split_seed, cfg.limit_train)
        return bool(fit(cfg, splits, Path(args.out_dir), progress=False, log=lambda *_: None))
    finally:
        tiny_model.unregister()


def test_two_ranks_equal_one_process_and_resume(cifar_root, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    # Two ranks train 2 epochs and stop; a second torchrun --resume adds the third. Meanwhile one
    # process (this one) trains all 3.
    ranks = start([*TORCHRUN, *ENTRY, *tiny_train_args(cifar_root, two, 2)])
    assert train_here(tiny_train_args(cifar_root, one, 3))
    first = finish(ranks)
    assert first.count("epoch   1/2") == 1, first  # rank 0 alone logs
    assert "2 ranks (gloo), global batch 16 = 2 × 8" in first
    second = finish(start([*TORCHRUN, *ENTRY, *tiny_train_args(cifar_root, two, 3, "--resume")]))
    assert "resumed" in second and "after epoch 2" in second

    a, b = read_metadata(one / "tiny.safetensors"), read_metadata(two / "tiny.safetensors")
    assert (a["world_size"], a["global_batch"], a["distributed"]["backend"]) == (1, 16, None)
    assert (b["world_size"], b["global_batch"]) == (2, 16)
    assert b["distributed"] == {"world_size": 2, "global_batch": 16, "per_rank_batch": 8, "backend": "gloo"}
    assert b["command"].startswith("torchrun --nproc-per-node 2 -m cifar.train ")
    assert len(a["history"]) == len(b["history"]) == 3
    for ha, hb in zip(a["history"], b["history"]):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert hb[key] == pytest.approx(ha[key], rel=1e-5, abs=1e-6), (ha["epoch"], key)
    assert b["test_acc"] == pytest.approx(a["test_acc"], abs=1e-6)

    from safetensors.torch import load_file

    wa, wb = load_file(one / "tiny.safetensors"), load_file(two / "tiny.safetensors")
    assert wa.keys() == wb.keys()  # no "module." prefix from the DDP wrapper
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-5, atol=1e-6, msg=k)
    # The weights moved, so equality is not two untrained copies agreeing.
    assert a["history"][-1]["train_loss"] < a["history"][0]["train_loss"]
    # Rank 0 alone wrote: one resume state, one checkpoint set, nothing per rank.
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_shards_tile_the_global_batch():
    batch = torch.arange(12)
    parts = [Distributed(rank=r, world_size=3).shard(batch) for r in range(3)]
    assert torch.equal(torch.cat(parts), batch)
    assert Distributed().shard(batch) is batch  # one process: the batch itself
    with pytest.raises(ValueError, match="does not split into 3 equal parts"):
        Distributed(world_size=3).check_batch(16)
