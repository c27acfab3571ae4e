"""Checkpoints that can be trusted: written atomically, checked before a resume, and fine-tuning from an exported
model.

* :class:`AtomicCheckpointIO` (a Lightning ``CheckpointIO`` plugin) writes each checkpoint to a temporary file and
  renames it: a full disk or a killed process leaves the previous ``last.ckpt``, never a truncated or 0-byte one.
* :func:`check_checkpoint` reads ``ckpt_path`` before training resumes from it and says, in one line, why it
  cannot be used: missing, empty, unreadable, an exported ``model.pt`` (use ``init_from``), or trained with other
  elements, another descriptor or another network than this run's (a Cu checkpoint resumed on Si data would
  otherwise export a "Si" model that never saw Si).
* :func:`init_from_model` starts a run from an exported model: its elements, descriptor, scaling and weights, new
  data, a fresh optimiser.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from mlpot.errors import CheckpointError
from mlpot.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, atomically (temporary file, then rename)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_write(path, lambda tmp: super(AtomicCheckpointIO, self).save_checkpoint(checkpoint, tmp, storage_options))


def describe(potential) -> dict:
    """What a checkpoint must share with a run to resume it: elements, descriptor and head (class and config)."""
    from mlpot.export import DESCRIPTORS, HEADS, _class_name, _plain

    return {"elements": list(potential.elements),
            "descriptor": {"class": _class_name(DESCRIPTORS, "descriptor", potential.descriptor),
                           "config": _plain(potential.descriptor.config(), "descriptor config")},
            "head": {"class": _class_name(HEADS, "head", potential.head),
                     "config": _plain({k: v for k, v in potential.head.config().items() if k != "e0"}, "head config")}}


def _differences(saved: dict, now: dict) -> list[str]:
    out = []
    if saved.get("elements") != now["elements"]:
        out.append(f"elements {saved.get('elements')} (this run: {now['elements']})")
    for part in ("descriptor", "head"):
        a, b = saved.get(part, {}), now[part]
        if a.get("class") != b["class"]:
            out.append(f"{part} {a.get('class')} (this run: {b['class']})")
        elif a.get("config") != b["config"]:
            keys = sorted(k for k in set(a.get("config", {})) | set(b["config"])
                          if a.get("config", {}).get(k) != b["config"].get(k))
            out.append(f"{part} settings {', '.join(keys)}")
    return out


def check_checkpoint(path, module) -> None:
    """Raise :class:`CheckpointError` (one line) when ``path`` cannot resume ``module``'s training."""
    src = str(path)
    p = Path(path)
    if not p.exists():
        raise CheckpointError("no such checkpoint file", src)
    if p.is_dir():
        raise CheckpointError("a folder, not a checkpoint file (e.g. <run>/checkpoints/last.ckpt)", src)
    if p.stat().st_size == 0:
        raise CheckpointError("empty checkpoint file (0 bytes; written when the disk was full?)", src)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - truncated, not a torch file, ...
        raise CheckpointError(f"not a readable checkpoint ({type(exc).__name__}; truncated?)", src) from None
    if isinstance(ckpt, dict) and ckpt.get("format") == "mlpot-model":
        raise CheckpointError("an exported model, not a training checkpoint: to start from it use "
                              f"init_from={src} (its weights, new data, a fresh optimiser)", src)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError("not a Lightning training checkpoint (no state_dict)", src)
    saved = ckpt.get("mlpot")
    if saved:
        diff = _differences(saved, describe(module.potential))
        if diff:
            raise CheckpointError("trained with other " + "; ".join(diff) + ": it cannot resume this run", src)
    own = module.state_dict()
    theirs = ckpt["state_dict"]
    missing = sorted(set(own) - set(theirs))
    extra = sorted(set(theirs) - set(own))
    shapes = sorted(k for k in set(own) & set(theirs) if tuple(own[k].shape) != tuple(theirs[k].shape))
    if missing or extra or shapes:
        parts = [f"{len(x)} {what} (e.g. {x[0]})" for x, what in ((missing, "weights missing"),
                                                                      (extra, "unknown weights"),
                                                                      (shapes, "weights of another shape")) if x]
        raise CheckpointError("does not fit this run's model: " + "; ".join(parts), src)


def init_from_model(path, data_elements: list[str]):
    """The exported model at ``path`` (``mlpot.export.load``) to fine-tune on data with ``data_elements``, which
    must all be among the model's elements."""
    from mlpot.export import load

    try:
        potential = load(path)
    except Exception as exc:  # noqa: BLE001 - ModelFileError and friends name the file already
        raise CheckpointError(f"init_from: {exc}") from None
    if hasattr(potential, "members"):  # a committee file
        raise CheckpointError(f"init_from: a committee of {len(potential.members)} models; fine-tune one member "
                              "(its members/<k>/model.pt) or each of them", str(path))
    unknown = sorted(set(data_elements) - set(potential.elements))
    if unknown:
        raise CheckpointError(f"init_from: the data has element(s) {', '.join(unknown)} that the model "
                              f"(elements {potential.elements}) was not trained on", str(path))
    return potential


__all__ = ["AtomicCheckpointIO", "check_checkpoint", "init_from_model", "describe"]
