"""The one training loop for both models; `python -m cifar.train`.

A run lives in one folder (default runs/<model>-<recipe>/): `resume.pt` is rewritten atomically after
every finished epoch, and at the end the best epoch's weights are written as `<model>.safetensors`,
evaluated on the test set, with the predictions beside them (`<model>.eval.npz`, `<model>.metrics.json`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from cifar import MEAN, STD
from cifar.checkpoints import (FORMAT, RESUME_FILE, CheckpointError, default_run_dir, load_state, run_files,
                               save_model, save_state)
from cifar.config import TrainConfig, add_config_arguments, config_from_args
from cifar.data import (DataError, Splits, augment, cifar_test_file, describe_source, load_cifar10, make_splits,
                        normalize)
from cifar.distributed import Distributed, join, leave
from cifar.evaluate import predict_logits, write_evaluation
from cifar.models import ModelError, build_model, count_parameters
from cifar.runtime import Runtime, mps_hint, seed_everything


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, a resume state of another run); the message says what to do."""


@dataclass
class TrainState:
    """What changes during a run; all of it goes into resume.pt."""

    epoch: int = 0  # finished epochs
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = -1.0
    best_weights: dict[str, torch.Tensor] | None = None
    wall_time: float = 0.0  # seconds over all sessions of this run

    @classmethod
    def from_resume(cls, saved: dict[str, Any]) -> TrainState:
        """The state stored in a resume.pt dict (see _resume_state), which holds these fields by name."""
        return cls(**{f.name: saved[f.name] for f in fields(cls)})


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam or SGD as the config says, fused into one kernel: Adam's per-tensor ops took 15% of a
    CustomCNN step at batch 32 on the CPU (fc1 alone holds 4.2M of its 4.6M parameters)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay, fused=True)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
    """The lr schedule; `per_step` says whether it steps every batch (onecycle) or every epoch."""
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=cfg.plateau_factor,
                                                          patience=cfg.plateau_patience)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.scheduler == "onecycle":
        # OneCycleLR divides by its phase lengths, which are 0 for a smoke run of a handful of steps;
        # a floor of 8 steps keeps such runs working (their cycle just never finishes).
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(8, cfg.epochs * steps_per_epoch),
                                                   pct_start=cfg.onecycle_pct_start)
    return None


def steps_per_epoch(cfg: TrainConfig, n_train: int) -> int:
    # drop_last: a tiny last batch would give BatchNorm noisy statistics.
    return max(1, n_train // cfg.batch_size)


def evaluate_split(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rt: Runtime, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a model on a uint8 split."""
    logits = predict_logits(model, x, rt, batch_size)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def train_one_epoch(model: nn.Module, opt: torch.optim.Optimizer, sched, cfg: TrainConfig, splits: Splits,
                    rt: Runtime, gen: torch.Generator, ema: AveragedModel | None, epoch: int,
                    progress: bool = True, scaler: torch.amp.GradScaler | None = None,
                    ddp: Distributed = Distributed()) -> tuple[float, float]:
    """One pass over the shuffled, augmented training set → (mean loss, accuracy).

    scaler: `rt.grad_scaler()`, kept across epochs by the caller (it learns its scale as it goes).
    ddp: under torchrun, each rank steps on its slice of every global batch; loss and accuracy are
    over all ranks. The training set may live on the GPU (`Runtime.data_device`); the epoch is then
    built there and no step copies images from the host.
    """
    model.train()
    n_steps = steps_per_epoch(cfg, len(splits.train_y))
    # Shuffle and augment the whole epoch up front: a few tensor ops instead of one per image. The
    # random numbers come from the CPU generator wherever the images are, so an epoch is the same
    # on every device and every rank, and the resume state holds one generator.
    order = torch.randperm(len(splits.train_y), generator=gen)[: n_steps * cfg.batch_size].to(splits.train_x.device)
    images = augment(splits.train_x[order], gen)
    labels = splits.train_y[order]
    size = cfg.train_size(epoch)
    total_loss = torch.zeros((), device=rt.device)  # on the device: no sync per step to add a loss
    correct = torch.zeros((), dtype=torch.long, device=rt.device)
    bar = tqdm(range(n_steps), desc=f"epoch {epoch}/{cfg.epochs}{size_note(size)}", leave=False, disable=not progress,
               unit="step")
    for step in bar:
        sl = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
        x = normalize(ddp.shard(images[sl]))
        if size != x.shape[-1]:
            # Progressive resizing: a 16px step costs a third of a 32px one on the CPU, and the
            # network (global average pool) takes any size; antialias keeps the downscale faithful.
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = rt.prepare_input(x)
        y = ddp.shard(labels[sl]).to(rt.device, non_blocking=True)
        with rt.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        step_loss = ddp.mean(loss.detach())  # the global batch's loss, the same on every rank
        if not torch.isfinite(step_loss):
            raise TrainingError(
                f"loss became {step_loss.item()} at epoch {epoch}, step {step + 1}: training diverged. "
                f"The last good state (epoch {epoch - 1}) is kept: resume it with --precision fp32, or start "
                f"again with a lower --lr in another --out-dir (a resumed run keeps its lr)."
            )
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)  # skips the step when the scaled gradients overflowed
            scaler.update()
        if sched is not None and cfg.scheduler == "onecycle":
            sched.step()
        if ema is not None:
            ema.update_parameters(model)
        total_loss += step_loss
        correct += ddp.sum((logits.argmax(1) == y).sum())
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{total_loss.item() / (step + 1):.3f}")
    return total_loss.item() / n_steps, correct.item() / len(labels)  # len: fewer than a batch with --limit-train


def size_note(size: int) -> str:
    """" @16px" for an epoch on downscaled images, "" at full size (progress bar and epoch line)."""
    return f" @{size}px" if size != 32 else ""


def git_commit() -> str:
    """HEAD's short hash, with "-dirty" when this package's files differ from it; else $GIT_COMMIT,
    for a copy of the tree without .git (a remote GPU box, CI)."""
    package = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=package, timeout=5).stdout.strip()
        # Only cifar/ decides what a run does: edits elsewhere (READMEs, tests) do not make it dirty.
        # A copied tree beside a stale .git is caught too (seen on a GPU box: HEAD one commit behind).
        if head and subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "."], capture_output=True,
                                   cwd=package, timeout=5).returncode == 1:
            head += "-dirty"
    except (OSError, subprocess.SubprocessError):
        head = ""
    return head or os.environ.get("GIT_COMMIT") or "unknown"


def _resume_state(cfg, model, opt, sched, ema, gen, st: TrainState) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "config": cfg.to_dict(),
        "epoch": st.epoch,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else None,
        "ema": ema.state_dict() if ema is not None else None,
        "data_rng": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": st.history,
        "best_epoch": st.best_epoch,
        "best_val_acc": st.best_val_acc,
        "best_weights": st.best_weights,
        "wall_time": st.wall_time,
    }


# Fields that may differ between an interrupted run and its resumption.
_RESUMABLE_CHANGES = {"epochs", "device", "precision", "eval_batch_size", "early_stopping"}


def fit(cfg: TrainConfig, splits: Splits, run_dir: Path, *, resume: bool = False, command: str = "",
        progress: bool = True, log=print, stop_after: int | None = None,
        ddp: Distributed = Distributed()) -> dict[str, Any]:
    """Train, keep the best val-acc epoch, evaluate it on the test set, write <model>.safetensors.

    Returns the checkpoint metadata. stop_after ends the session after that many epochs of this
    call without finishing the run (a stand-in for a killed process, used by tests). ddp: this
    process's rank in a torchrun job (see cifar.distributed); only rank 0 logs and writes files,
    and the other ranks return {}.
    """
    run_dir = Path(run_dir)
    commit = git_commit()  # the code that starts the run, not whatever HEAD is when it ends
    ddp.check_batch(cfg.batch_size)
    rt = Runtime.decide(cfg.device, cfg.precision, index=ddp.local_rank if ddp.enabled else None)
    if not ddp.is_main:
        log, progress = (lambda *_: None), False
    seed_everything(cfg.seed)
    model = rt.prepare_model(build_model(cfg.model, **cfg.builder_kwargs()))
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, steps_per_epoch(cfg, len(splits.train_y)))
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
           if cfg.ema_decay > 0 else None)
    gen = torch.Generator().manual_seed(cfg.seed)
    scaler = rt.grad_scaler()
    st = TrainState()
    # The module the step calls: the model itself, or DDP around it, compiled on request. The model
    # stays unwrapped for its state dict, the EMA and evaluation.
    step_model = ddp.wrap(model, rt, cfg.sync_bn)
    if cfg.compile:
        step_model = torch.compile(step_model)
    # Moved once, for the whole run: on CUDA the training set lives on the GPU (a no-op elsewhere).
    splits = dataclasses.replace(splits, train_x=splits.train_x.to(rt.data_device),
                                 train_y=splits.train_y.to(rt.data_device))

    resume_path = run_dir / RESUME_FILE
    if resume and resume_path.exists():
        saved = load_state(resume_path)
        old = TrainConfig.from_dict(saved["config"])
        diff = {k for k, v in old.to_dict().items() if getattr(cfg, k) != v} - _RESUMABLE_CHANGES
        if diff:
            raise TrainingError(f"{resume_path} belongs to a different run (differs in {', '.join(sorted(diff))}); "
                                f"use another --out-dir or drop --resume to start over")
        if cfg.epochs != old.epochs and old.scheduler in ("cosine", "onecycle"):
            # The restored scheduler is laid out for the old length: a longer run would crash past its
            # last step (one-cycle) or climb back up (cosine), a shorter one would end at a high lr.
            raise TrainingError(f"{resume_path} is a {old.epochs}-epoch run whose {old.scheduler} schedule is fixed "
                                f"to that length; resume it with --epochs {old.epochs}, or train {cfg.epochs} epochs "
                                f"from scratch in another --out-dir")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        if sched is not None and saved["scheduler"] is not None:
            sched.load_state_dict(saved["scheduler"])
        if ema is not None and saved["ema"] is not None:
            ema.load_state_dict(saved["ema"])
        gen.set_state(saved["data_rng"])
        torch.set_rng_state(saved["torch_rng"])
        if saved["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        st = TrainState.from_resume(saved)
        log(f"resumed {resume_path} after epoch {st.epoch} (best val acc {st.best_val_acc:.4f} at epoch {st.best_epoch})")
    elif resume:
        log(f"no resume state at {resume_path}; starting from scratch")

    log(f"{cfg.model} ({count_parameters(model):,} params), recipe {cfg.recipe}, {len(splits.train_y):,} train / "
        f"{len(splits.val_y):,} val images, {rt.describe()}{ranks_note(ddp, cfg)}")
    done_here = 0
    while st.epoch < cfg.epochs:
        if cfg.early_stopping and st.epoch - st.best_epoch >= cfg.early_stopping:
            log(f"early stopping: no better val accuracy for {cfg.early_stopping} epochs")
            break
        if stop_after is not None and done_here >= stop_after:
            return {}
        epoch = st.epoch + 1
        size = cfg.train_size(epoch)
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        train_loss, train_acc = train_one_epoch(step_model, opt, sched, cfg, splits, rt, gen, ema, epoch, progress,
                                                scaler, ddp)
        scored = ema.module if ema is not None else model
        val_loss, val_acc = evaluate_split(scored, splits.val_x, splits.val_y, rt, cfg.eval_batch_size)
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(val_acc)
        elif sched is not None and cfg.scheduler != "onecycle":
            sched.step()
        seconds = time.perf_counter() - t0
        st.epoch, st.wall_time = epoch, st.wall_time + seconds
        st.history.append(dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss,
                               val_acc=val_acc, lr=lr, seconds=seconds, train_size=size))
        if val_acc > st.best_val_acc:
            st.best_epoch, st.best_val_acc = epoch, val_acc
            st.best_weights = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
        log(f"epoch {epoch:3d}/{cfg.epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
            f"val loss {val_loss:.4f} acc {val_acc:.4f}  lr {lr:.2e}  {seconds:.0f}s{size_note(size)}"
            f"{'  *best' if st.best_epoch == epoch else ''}")
        if ddp.is_main:
            save_state(_resume_state(cfg, model, opt, sched, ema, gen, st), resume_path)
        done_here += 1

    if not ddp.is_main:
        return {}
    return finish(cfg, splits, run_dir, st, rt, command, log, commit, ddp)


def ranks_note(ddp: Distributed, cfg: TrainConfig) -> str:
    """", 2 ranks (gloo), global batch 32 = 2 × 16" under torchrun, "" in one process."""
    if not ddp.enabled:
        return ""
    return (f", {ddp.world_size} ranks ({ddp.backend}), global batch {cfg.batch_size} = "
            f"{ddp.world_size} × {cfg.batch_size // ddp.world_size}")


def finish(cfg: TrainConfig, splits: Splits, run_dir: Path, st: TrainState, rt: Runtime, command: str, log=print,
           commit: str | None = None, ddp: Distributed = Distributed()) -> dict[str, Any]:
    """Evaluate the best epoch on the test set and write the checkpoint with its metadata and predictions."""
    score_rt = rt.scoring()
    model = score_rt.prepare_model(build_model(cfg.model, **cfg.builder_kwargs()))
    model.load_state_dict(st.best_weights)
    test_logits = predict_logits(model, splits.test_x, score_rt, cfg.eval_batch_size)
    test_acc = (test_logits.argmax(1) == splits.test_y).float().mean().item()
    best = st.history[st.best_epoch - 1]
    test_file = cifar_test_file(splits.source)
    data_source = describe_source(test_file) if test_file.is_file() else None
    meta = {
        "model": cfg.model,
        "builder_kwargs": cfg.builder_kwargs(),
        "parameters": count_parameters(model),
        "config": cfg.to_dict(),
        "recipe": cfg.recipe,
        "classes": list(splits.classes),
        "normalization": {"mean": list(MEAN), "std": list(STD)},
        "data": {"source": splits.source, **(data_source or {}), "split_seed": splits.split_seed, "val_size": cfg.val_size,
                 "n_train": len(splits.train_y), "n_val": len(splits.val_y), "n_test": len(splits.test_y)},
        "history": st.history,
        "epochs_run": st.epoch,
        "best_epoch": st.best_epoch,
        "train_acc": best["train_acc"],
        "val_acc": st.best_val_acc,
        "test_acc": test_acc,
        "command": command,
        "git_commit": commit or git_commit(),
        "torch_version": torch.__version__,
        "hardware": rt.describe() + (f"; × {ddp.world_size} ranks" if ddp.enabled else ""),
        # Processes that trained it (torchrun's ranks, over all machines) and the images per optimiser step over all.
        "world_size": ddp.world_size,
        "global_batch": cfg.batch_size,
        "distributed": ddp.describe(cfg.batch_size),
        "precision": rt.precision,  # of training
        "eval_precision": score_rt.precision,  # of test_acc and the stored predictions
        "wall_time_s": round(st.wall_time, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    files = run_files(run_dir, cfg.model)
    save_model(model, files.weights, meta)
    write_evaluation(files.weights, test_logits.numpy(), splits.test_y.numpy(), splits.classes, data=data_source)
    log(f"best epoch {st.best_epoch}: val acc {st.best_val_acc:.4f}, test acc {test_acc:.4f}")
    log(f"wrote {', '.join(str(p) for p in files.all())}; resume state in {run_dir / RESUME_FILE}")
    return meta


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cifar.train",
        description="Train a CIFAR-10 model with one of the recipes. Every config flag overrides the recipe.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (else $CIFAR10_DIR, else ./data)")
    p.add_argument("--download", action="store_true", help="download the official archive if the data folder lacks it")
    p.add_argument("--out-dir", default=None, help="run folder for resume state and outputs (default: runs/<model>-<recipe>)")
    p.add_argument("--resume", action="store_true", help="continue from <out-dir>/resume.pt after the last finished epoch")
    p.add_argument("--quiet", action="store_true", help="no progress bars (summary lines still print)")
    add_config_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ddp = Distributed()
    try:
        cfg = config_from_args(args)
        ddp = join(cfg.device)  # torchrun's job, or the one-process context
        run_dir = Path(args.out_dir) if args.out_dir else default_run_dir(cfg.model, cfg.recipe)
        if (run_dir / RESUME_FILE).exists() and not args.resume:
            raise TrainingError(f"{run_dir / RESUME_FILE} exists from an earlier run: add --resume to continue it, "
                                f"or pick another --out-dir (or delete that folder) to start over")
        data = load_cifar10(args.data_dir, download=args.download)
        splits = make_splits(data, cfg.val_size, cfg.split_seed, cfg.limit_train or None)
        launcher = f"torchrun --nproc-per-node {ddp.world_size} -m" if ddp.enabled else "python -m"
        command = f"{launcher} cifar.train " + shlex.join(sys.argv[1:] if argv is None else argv)
        fit(cfg, splits, run_dir, resume=args.resume, command=command, progress=not args.quiet, ddp=ddp)
    except (DataError, CheckpointError, ModelError, TrainingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NotImplementedError as e:  # an op Apple's MPS lacks, with the fallback turned off
        if mps_hint(e) is None:
            raise
        print(f"error: {mps_hint(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command with --resume to continue after the last finished epoch",
              file=sys.stderr)
        return 130
    leave(ddp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
