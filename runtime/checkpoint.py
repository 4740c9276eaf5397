"""Checkpoints: safetensors weights per model plus JSON metadata and training state, written atomically."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

LATEST = "latest.json"


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


def save_checkpoint(run_dir: Path, step: int, models: dict, state: dict, metadata: dict) -> Path:
    """Writes `checkpoints/step_NNNNNNN/` (one `<model>.safetensors` per model, `state.pt`,
    `meta.json`) into a temporary folder, renames it into place, then points `latest.json` at it.
    A crash at any moment leaves the previous checkpoint valid and `latest.json` pointing at it."""
    import torch
    from safetensors.torch import save_model

    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    staging = root / f".staging-{step:07d}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    for name, module in models.items():
        save_model(module, str(staging / f"{name}.safetensors"))
    torch.save(state, staging / "state.pt")
    (staging / "meta.json").write_text(json.dumps({"step": step, **metadata}, indent=2, default=str))
    previous = None
    if final.exists():
        # Rewriting a step (the end of a run, a resumed finished run): `latest.json` may name this
        # folder, so it points at a hard-linked copy while the folder is swapped.
        previous = root / f".previous-{step:07d}-{os.getpid()}"
        if previous.exists():
            shutil.rmtree(previous)
        shutil.copytree(final, previous, copy_function=_link_or_copy)
        _write_atomic(root / LATEST, json.dumps({"step": step, "path": previous.name}).encode())
        shutil.rmtree(final)
    os.replace(staging, final)
    _write_atomic(root / LATEST, json.dumps({"step": step, "path": final.name}).encode())
    if previous is not None:
        shutil.rmtree(previous)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint folder `latest.json` names, if it exists and is complete."""
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.exists():
        return None
    folder = pointer.parent / json.loads(pointer.read_text())["path"]
    return folder if (folder / "meta.json").exists() else None


def load_weights(folder: Path, models: dict) -> None:
    """Loads each model's weights from a checkpoint folder; names the model and file on failure."""
    from safetensors.torch import load_model

    for name, module in models.items():
        path = Path(folder) / f"{name}.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {folder} has no weights for model `{name}` ({path.name})")
        try:
            missing, unexpected = load_model(module, str(path), strict=False)
        except RuntimeError as error:
            detail = str(error).strip().splitlines()[-1].strip()
            raise ValueError(f"weights in {path} do not fit model `{name}`: {detail}") from None
        if missing or unexpected:
            raise ValueError(
                f"weights in {path} do not fit model `{name}`: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )


def load_state(folder: Path) -> tuple:
    """(training state, metadata) of a checkpoint folder."""
    import torch

    state = torch.load(Path(folder) / "state.pt", weights_only=True)
    metadata = json.loads((Path(folder) / "meta.json").read_text())
    return state, metadata


def weights_file(path: str, model: str | None = None) -> Path:
    """A safetensors file from what a user may point at: the file itself, a checkpoint folder, a
    run folder (its latest checkpoint) or its checkpoints/ folder. `model` picks a file when a
    checkpoint holds several models."""
    target = Path(path)
    if target.is_file() or not target.exists():
        return target
    if (target / "checkpoints" / LATEST).exists():
        target = latest_checkpoint(target) or target
    elif (target / LATEST).exists():
        target = latest_checkpoint(target.parent) or target
    files = sorted(target.glob("*.safetensors"))
    if model is not None and (target / f"{model}.safetensors").exists():
        return target / f"{model}.safetensors"
    if len(files) == 1:
        return files[0]
    names = ", ".join(f.stem for f in files) or "none"
    raise FileNotFoundError(f"{path}: choose the model's weights file in {target} (models: {names})")


def checkpoint_metadata(weights: Path) -> dict:
    """meta.json next to a checkpoint's weights file, or {} for a bare file."""
    meta = Path(weights).parent / "meta.json"
    return json.loads(meta.read_text()) if meta.exists() else {}
