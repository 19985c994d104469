"""Predictions of a checkpoint on the test set, saved once, and every metric derived from them.

`python -m cifar.evaluate --checkpoint checkpoints/cnn.safetensors` writes `checkpoints/cnn.eval.npz`
(logits, probabilities, predictions, labels for all test images) and `checkpoints/cnn.metrics.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from torch import nn
from tqdm.auto import tqdm

from cifar import CLASSES, metrics
from cifar.checkpoints import CheckpointError, RunFiles, load_model
from cifar.data import DataError, describe_source, load_test_split, normalize, to_tensor
from cifar.runtime import DEVICES, Runtime, mps_hint

# Runtime.precision names (recorded at the end of training) and config values → a --precision choice.
TRAINED_PRECISION = {"fp32": "fp32", "bfloat16": "bf16", "bf16": "bf16"}


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, rt: Runtime, batch_size: int = 500,
                   progress: bool = False, desc: str = "predict") -> torch.Tensor:
    """Logits (float32, CPU) for uint8 NCHW images, in eval mode, in batches."""
    model.eval()
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc=desc, leave=False, disable=not progress):
        x = rt.prepare_input(normalize(images[i : i + batch_size]))
        with rt.autocast():
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def write_evaluation(checkpoint: str | Path, logits: np.ndarray, labels: np.ndarray, classes,
                     mirrored_logits: np.ndarray | None = None, data: dict | None = None) -> dict:
    """Save logits, probabilities, predictions and labels beside the checkpoint, plus the metrics JSON.

    With the logits of the mirrored images, the JSON also gets `flip_tta_accuracy`; everything else
    (the npz, the headline accuracy) stays single-pass. `data` (cifar.data.describe_source) names the
    test set the numbers come from, so the app can say which CIFAR-10 they were measured on.
    """
    files = RunFiles.beside(checkpoint)
    npz_path, json_path = files.evaluation, files.metrics
    probs = metrics.softmax(logits)
    np.savez_compressed(npz_path, logits=logits.astype(np.float32), probs=probs.astype(np.float32),
                        preds=probs.argmax(1).astype(np.int64), labels=labels.astype(np.int64))
    summary = metrics.summarize(labels, probs, list(classes))
    if mirrored_logits is not None:
        summary["flip_tta_accuracy"] = metrics.flip_tta_accuracy(labels, probs, metrics.softmax(mirrored_logits))
    if data is not None:
        summary["data"] = data
    json_path.write_text(json.dumps(summary, indent=1))
    return summary


def load_evaluation(checkpoint: str | Path) -> dict[str, np.ndarray]:
    """The saved predictions of a checkpoint (see write_evaluation)."""
    with np.load(RunFiles.beside(checkpoint).evaluation) as z:
        return {k: z[k] for k in z.files}


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | None = None, download: bool = False,
                        device: str = "auto", precision: str = "auto", progress: bool = True,
                        flip_tta: bool = False) -> dict:
    """Run a checkpoint over the whole test set, write its evaluation, return the metrics summary.

    flip_tta=True also runs the mirrored test images and adds `flip_tta_accuracy` to the summary.
    """
    model, meta = load_model(checkpoint)
    if precision == "auto":
        # Evaluate as the stored predictions were made, so the stored test accuracy is reproduced
        # exactly: fp32 (eval_precision) since training began scoring in fp32; older checkpoints
        # were scored in their training precision.
        recorded = meta.get("eval_precision") or meta.get("precision") or meta.get("config", {}).get("precision")
        precision = TRAINED_PRECISION.get(recorded, "auto")
    rt = Runtime.decide(device, precision)
    model = rt.prepare_model(model)
    # The test batch only: scoring needs neither the 150 MB of training batches nor their presence.
    test_x, test_y, test_file = load_test_split(data_dir, download=download)
    images = to_tensor(test_x)
    logits = predict_logits(model, images, rt, progress=progress, desc="test set")
    mirrored = None
    if flip_tta:
        # Horizontal flip only: the training augmentation, so the model has seen mirrored objects.
        mirrored = predict_logits(model, images.flip(3), rt, progress=progress, desc="mirrored").numpy()
    return write_evaluation(checkpoint, logits.numpy(), test_y, meta.get("classes", CLASSES), mirrored,
                            data=describe_source(test_file))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cifar.evaluate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Evaluate a checkpoint on the CIFAR-10 test set; save predictions and metrics beside it.")
    p.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint written by cifar.train")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (else $CIFAR10_DIR, else ./data)")
    p.add_argument("--download", action="store_true", help="download the official archive if the data folder lacks it")
    p.add_argument("--device", default="auto", choices=DEVICES, help="where to run: auto tries cuda, mps, cpu")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="auto: the precision the stored predictions were made in (fp32 for checkpoints from this "
                        "version), so the stored test accuracy is reproduced exactly; fp32 for full precision")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--flip-tta", action="store_true",
                   help="also report flip test-time augmentation (mean softmax of each image and its mirror); "
                        "the headline accuracy stays single-pass")
    args = p.parse_args(argv)
    try:
        summary = evaluate_checkpoint(args.checkpoint, args.data_dir, args.download, args.device, args.precision,
                                      progress=not args.quiet, flip_tta=args.flip_tta)
    except (DataError, CheckpointError, ValueError) as e:  # ValueError: e.g. --device cuda without CUDA
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NotImplementedError as e:  # an op Apple's MPS lacks, with the fallback turned off
        if mps_hint(e) is None:
            raise
        print(f"error: {mps_hint(e)}", file=sys.stderr)
        return 2
    files = RunFiles.beside(args.checkpoint)
    npz_path, json_path = files.evaluation, files.metrics
    data = np.load(npz_path)
    names = list(summary["per_class_accuracy"])
    print(metrics.format_report(data["labels"], data["preds"], names))
    print(f"test accuracy {summary['accuracy']:.4f}  top-2 {summary['top_k']['top2']:.4f}  ECE {summary['ece']:.4f}")
    if "flip_tta_accuracy" in summary:
        print(f"flip TTA accuracy {summary['flip_tta_accuracy']:.4f} (two passes: image and mirror; not the headline)")
    print(f"wrote {npz_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
