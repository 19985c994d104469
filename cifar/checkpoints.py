"""Self-describing checkpoints that load without running code from the file, and the one owner of a
run's file names (`RunFiles`, `default_run_dir`).

Shipped weights are one `.safetensors` file per model; its header holds JSON metadata (model name
and builder kwargs, config, classes, normalisation, data, history, results, provenance), so the app
rebuilds everything from the file alone. Resume state is a `.pt` dict of plain tensors and
containers, read only with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from cifar.models import MODELS, ModelError, build_model

FORMAT = "cifar-explain/1"
META_KEY = "cifar_explain"

# A run's files. Nothing else spells these names: train, evaluate, bundle, tune and the app ask here.
WEIGHTS_SUFFIX = ".safetensors"
EVALUATION_SUFFIX = ".eval.npz"
METRICS_SUFFIX = ".metrics.json"
# cifar.trust's outputs: temperature, calibration and OOD table; the Mahalanobis statistics.
TRUST_SUFFIX = ".trust.json"
MAHALANOBIS_SUFFIX = ".mahalanobis.npz"
RESUME_FILE = "resume.pt"
RUNS_DIR = "runs"


@dataclass(frozen=True)
class RunFiles:
    """One model's files in one folder: <stem>.safetensors, <stem>.eval.npz, <stem>.metrics.json."""

    folder: Path
    stem: str  # the model name for files cifar.train writes

    @classmethod
    def beside(cls, checkpoint: str | os.PathLike) -> RunFiles:
        """The files that belong with a checkpoint: same folder, same stem."""
        path = Path(checkpoint)
        name = path.name.removesuffix(WEIGHTS_SUFFIX) if path.name.endswith(WEIGHTS_SUFFIX) else path.stem
        return cls(path.parent, name)

    @property
    def weights(self) -> Path:
        return self.folder / f"{self.stem}{WEIGHTS_SUFFIX}"

    @property
    def evaluation(self) -> Path:
        return self.folder / f"{self.stem}{EVALUATION_SUFFIX}"

    @property
    def metrics(self) -> Path:
        return self.folder / f"{self.stem}{METRICS_SUFFIX}"

    @property
    def trust(self) -> Path:
        return self.folder / f"{self.stem}{TRUST_SUFFIX}"

    @property
    def mahalanobis(self) -> Path:
        return self.folder / f"{self.stem}{MAHALANOBIS_SUFFIX}"

    def all(self) -> tuple[Path, Path, Path]:
        """The three files, in the order they are shipped and copied."""
        return self.weights, self.evaluation, self.metrics


def run_files(folder: str | os.PathLike, model: str) -> RunFiles:
    """Where `model`'s checkpoint, predictions and metrics live in `folder`."""
    return RunFiles(Path(folder), model)


def default_run_dir(model: str, recipe: str) -> Path:
    """The folder `python -m cifar.train` writes to without --out-dir."""
    return Path(RUNS_DIR) / f"{model}-{recipe}"


def evaluations_in(folder: str | os.PathLike) -> list[RunFiles]:
    """Every run in a folder that has its test-set predictions, sorted by name."""
    found = sorted(Path(folder).glob(f"*{EVALUATION_SUFFIX}"))
    return [RunFiles(p.parent, p.name.removesuffix(EVALUATION_SUFFIX)) for p in found]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded; the message names the file and the problem."""


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename over path: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file owner-only (0600); give it the mode a plain open() would, so that an app
        # served as another user (a container, a service account) can still read the checkpoint.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: nn.Module, path: str | os.PathLike, metadata: dict[str, Any], dtype: torch.dtype | None = None) -> None:
    """Write weights (optionally cast, e.g. fp16 for shipping) and JSON metadata to a .safetensors file.

    metadata must hold "model" (a registered name) and "builder_kwargs".
    """
    if metadata.get("model") not in MODELS:
        raise CheckpointError(f"metadata 'model' must be one of {sorted(MODELS)}, got {metadata.get('model')!r}")
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous()
    header = {META_KEY: json.dumps({"format": FORMAT, **metadata})}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=header))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, without loading its weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint (truncated or another format: {e})") from None
    if META_KEY not in header:
        raise CheckpointError(f"{path}: a safetensors file, but not a cifar-explain checkpoint (no '{META_KEY}' metadata)")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    return meta


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", expect: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from a checkpoint alone → (model in eval mode, metadata).

    expect: the architecture the caller needs ("cnn", "resnet18"); a file of another one is refused.
    The model takes float NCHW input normalised to [-1, 1] and returns logits.
    """
    path = Path(path)
    meta = read_metadata(path)
    name = meta.get("model")
    if expect is not None and name != expect:
        raise CheckpointError(f"{path}: holds a {name!r} model, but a {expect!r} model was expected")
    kwargs = meta.get("builder_kwargs", {})
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{path}: metadata 'builder_kwargs' must be a mapping, got {type(kwargs).__name__}")
    try:
        model = build_model(name, **kwargs)
    except ModelError as e:
        raise CheckpointError(f"{path}: {e}") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: weights are unreadable (truncated file? {e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match a {name!r} model: "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    bad = [k for k in expected if expected[k].shape != state[k].shape]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{path}: {len(bad)} tensors have the wrong shape, e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}")
    # Stored fp16 weights (shipping) are cast back to the model's dtype by load_state_dict's copy_.
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def save_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write resume state atomically (temp file, then os.replace)."""
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read resume state with weights_only=True: a file that would run code is refused, not executed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no resume state here (nothing to resume)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: not a loadable resume state (truncated, corrupt or unsafe: {(str(e).splitlines() or [type(e).__name__])[0]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cifar-explain resume state")
    return state
