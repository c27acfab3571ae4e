"""Export and import of trained potentials: one self-contained file, ``model.pt``.

The file is ``torch.save`` of a plain dict (dicts, lists, str, float, int, bool,
None and tensors only: no pickled ``nn.Module``, no custom class), so it is read
back with ``torch.load(weights_only=True)`` and never runs code from the file::

    {
      "format": "mlpot-model", "format_version": 1, "mlpot_version": "0.1.0", "torch_version": "...",
      "elements": ["Cu", "S"], "cutoff": 4.0, "units": {"energy": "eV", "length": "Å"}, "dtype": "float64",
      "descriptor": {"class": "ACSF", "config": {...}, "state": {}},
      "scaler": {"class": "FeatureScaler", "config": {"n_elements", "n_features", "mode", "smin", "smax"},
                 "state": {"a", "b", "gmin", "gmax", "gmean", "gsigma"}},
      "head": {"class": "HDNNP", "config": {"n_features_per_element", "hidden", "activation"},
               "state": {"nets.nets.0.0.weight", ..., "e0", "energy_scale"}},
      "metadata": {...},    # Potential.metadata
      "extra": {...},       # free plain data: training-config summary, metrics, ...
    }

``gmin``/``gmax`` are the training-range min/max of every descriptor component
(extrapolation monitoring). A committee (:func:`save_committee`, format_version 2) holds the shared descriptor once and a list of members::

    {..., "format_version": 2, "descriptor": {...},
     "committee": [{"scaler": {...}, "head": {...}, "metadata": {...}, "extra": {...}}, ...],
     "metadata": {...}, "extra": {...}}

and :func:`load` gives a :class:`~mlpot.models.committee.Committee` for it. Descriptor, scaler and head classes are looked up by
name in registries (:func:`register_descriptor`, :func:`register_head`,
:func:`register_scaler`); a class is rebuilt with ``cls.from_config(config)``
when it has one, else ``cls(**config)``, and must offer ``config()`` to be saved.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from mlpot.descriptors.acsf import ACSF
from mlpot.descriptors.bessel import SphericalBessel
from mlpot.descriptors.chebyshev import Chebyshev
from mlpot.descriptors.concat import Concat
from mlpot.descriptors.gaussian_legendre import GaussianLegendre
from mlpot.descriptors.sannp import SANNP
from mlpot.descriptors.scaling import FeatureScaler
from mlpot.errors import ModelFileError
from mlpot.models.hdnnp import HDNNP
from mlpot.models.pinn import PINN
from mlpot.models.committee import Committee, CommitteeError
from mlpot.models.potential import Potential

FORMAT = "mlpot-model"
FORMAT_VERSION = 2  # the newest format this mlpot reads: 1 = one model, 2 = a committee (single models stay 1)
SINGLE_FORMAT_VERSION = 1
COMMITTEE_FORMAT_VERSION = 2
FILENAME = "model.pt"
UNITS = {"energy": "eV", "length": "Å"}
SCALER_BUFFERS = ("a", "b", "gmin", "gmax", "gmean", "gsigma")


class ModelFormatError(ModelFileError):
    """An mlpot model file this mlpot cannot rebuild (newer format, unknown class, other units)."""


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """A model file that does not exist."""


# -- registries ----------------------------------------------------------------------------------
DESCRIPTORS: dict[str, type] = {}
HEADS: dict[str, type] = {}
SCALERS: dict[str, type] = {}


def _register(registry: dict, kind: str, name: str, cls: type) -> type:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind} name must be a non-empty string, got {name!r}")
    old = registry.get(name)
    if old is not None and old is not cls:
        raise ValueError(f"{kind} name '{name}' is already registered for {old.__module__}.{old.__qualname__}")
    registry[name] = cls
    return cls


def register_descriptor(name: str, cls: type) -> type:
    """Make descriptor class ``cls`` savable/loadable under ``name`` (needs ``config()``)."""
    return _register(DESCRIPTORS, "descriptor", name, cls)


def register_head(name: str, cls: type) -> type:
    """Make head class ``cls`` savable/loadable under ``name`` (needs ``config()``)."""
    return _register(HEADS, "head", name, cls)


def register_scaler(name: str, cls: type) -> type:
    """Make input-scaler class ``cls`` savable/loadable under ``name`` (needs ``config()``)."""
    return _register(SCALERS, "scaler", name, cls)


register_descriptor("ACSF", ACSF)
register_descriptor("Chebyshev", Chebyshev)
register_descriptor("SphericalBessel", SphericalBessel)
register_descriptor("GaussianLegendre", GaussianLegendre)
register_descriptor("SANNP", SANNP)
register_descriptor("Concat", Concat)
register_head("HDNNP", HDNNP)
register_head("PINN", PINN)  # an mlpot without it: ModelFormatError "unknown head class 'PINN'"
register_scaler("FeatureScaler", FeatureScaler)


def _class_name(registry: dict, kind: str, obj) -> str:
    for name, cls in registry.items():
        if type(obj) is cls:
            break
    else:
        raise TypeError(
            f"cannot save a {kind} of type {type(obj).__qualname__}: register it with "
            f"mlpot.export.register_{kind}(name, cls)"
        )
    if not callable(getattr(obj, "config", None)):
        raise TypeError(f"cannot save a {kind} of type {type(obj).__qualname__}: it has no config() method")
    return name


# -- plain data ----------------------------------------------------------------------------------
def _plain(obj, where: str):
    """``obj`` as plain data that ``torch.load(weights_only=True)`` reads back (tensors on CPU)."""
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, torch.dtype):
        return str(obj).removeprefix("torch.")
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool)):
                raise TypeError(f"{where}: key {k!r} of type {type(k).__name__} cannot be stored in a model file")
            out[_plain(k, where)] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if type(obj).__module__ == "numpy":  # numpy scalars and arrays
        if hasattr(obj, "shape") and obj.shape != ():
            return torch.from_numpy(obj.copy())
        return obj.item()
    raise TypeError(f"{where}: a {type(obj).__qualname__} cannot be stored in a model file (plain data only)")


def _part(registry: dict, kind: str, module) -> dict:
    name = _class_name(registry, kind, module)
    return {
        "class": name,
        "config": _plain(module.config(), f"{kind} config"),
        "state": _plain(dict(module.state_dict()), f"{kind} state"),
    }


def _model_path(path) -> Path:
    path = Path(path)
    return path / FILENAME if path.is_dir() else path


# -- save ----------------------------------------------------------------------------------------
def to_dict(potential: Potential, extra: dict | None = None) -> dict:
    """The plain dict that :func:`save` writes."""
    from mlpot import __version__

    scaler = _part(SCALERS, "scaler", potential.scaler)
    missing = [k for k in SCALER_BUFFERS if k not in scaler["state"]]
    if missing:
        raise TypeError(f"scaler state lacks {', '.join(missing)}")
    return {
        "format": FORMAT,
        "format_version": SINGLE_FORMAT_VERSION,
        "mlpot_version": str(__version__),
        "torch_version": str(torch.__version__),
        "elements": [str(e) for e in potential.elements],
        "cutoff": float(potential.cutoff),
        "units": dict(UNITS),
        "dtype": str(potential.dtype).removeprefix("torch."),
        "descriptor": _part(DESCRIPTORS, "descriptor", potential.descriptor),
        "scaler": scaler,
        "head": _part(HEADS, "head", potential.head),
        "metadata": _plain(dict(potential.metadata or {}), "metadata"),
        "extra": _plain(dict(extra or {}), "extra"),
    }


def save(potential: Potential, path, extra: dict | None = None) -> Path:
    """Write ``potential`` to one self-contained file and return its path.

    ``path`` is the file to write (conventionally ``model.pt``); an existing directory gets
    ``model.pt`` inside it. ``extra``: plain data kept alongside (training-config summary,
    metrics, ...); read it back with :func:`read_info`. The write is atomic (temporary file,
    then rename).
    """
    from mlpot.files import atomic_write

    if isinstance(potential, Committee):
        return save_committee(potential, path, extra)
    data = to_dict(potential, extra)
    path = _model_path(path)
    atomic_write(path, lambda tmp: torch.save(data, tmp))
    return path


def committee_to_dict(committee: Committee, extra: dict | None = None, member_extras=None) -> dict:
    """The plain dict that :func:`save_committee` writes."""
    members = list(committee.members)
    member_extras = list(member_extras) if member_extras is not None else [{}] * len(members)
    data = {k: v for k, v in to_dict(members[0]).items() if k not in ("scaler", "head", "metadata", "extra")}
    data["format_version"] = COMMITTEE_FORMAT_VERSION
    data["committee"] = []
    for k, (m, ex) in enumerate(zip(members, member_extras)):
        part = to_dict(m, ex)
        data["committee"].append({key: part[key] for key in ("scaler", "head", "metadata", "extra")})
    data["metadata"] = _plain(dict(committee.metadata or {}), "metadata")
    data["extra"] = _plain(dict(extra or {}), "extra")
    return data


def save_committee(members, path, extra: dict | None = None) -> Path:
    """Write a committee to one file (``model.pt`` conventionally) and return its path.

    ``members``: a :class:`~mlpot.models.committee.Committee`, or a list of Potentials or of model files / run
    folders (each file's ``extra``, e.g. its training config and metrics, is kept per member, and
    ``extra["members"]`` lists the files). Members must share elements, cutoff, descriptor and dtype: anything else
    raises :class:`~mlpot.models.committee.CommitteeError` naming the member file. :func:`load` reads it back as a
    Committee."""
    from mlpot.files import atomic_write

    member_extras = None
    if isinstance(members, Committee):
        committee = members
    else:
        members = list(members)
        if members and all(isinstance(m, (str, os.PathLike)) for m in members):
            names = [str(_model_path(m)) for m in members]
            loaded = [load(m) for m in members]
            if any(isinstance(m, Committee) for m in loaded):
                bad = next(n for n, m in zip(names, loaded) if isinstance(m, Committee))
                raise CommitteeError(f"{bad}: is a committee already; give its members' files")
            member_extras = [read_info(m).get("extra", {}) for m in members]
            extra = {"members": names, **dict(extra or {})}
            committee = Committee(loaded, names=names)
        else:
            committee = Committee(members)
    data = committee_to_dict(committee, extra, member_extras)
    path = _model_path(path)
    atomic_write(path, lambda tmp: torch.save(data, tmp))
    return path


# -- load ----------------------------------------------------------------------------------------
def _oneline(e: BaseException, limit: int = 160) -> str:
    lines = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(path, map_location="cpu") -> tuple[dict, str]:
    """The checked raw dict of a model file and its name."""
    path = _model_path(path)
    src = str(path)
    if not path.exists():
        raise ModelFileNotFoundError("model file not found", src)
    if not path.is_file():
        raise ModelFileError("not a file", src)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as e:
        raise ModelFileError(f"cannot read model file ({_oneline(e)})", src) from None
    except Exception as e:  # not a torch file, or one holding pickled objects
        raise ModelFileError(f"not an mlpot model file (torch.load failed: {_oneline(e)})", src) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFileError(f"not an mlpot model file (no 'format': '{FORMAT}' entry)", src)
    version = data.get("format_version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"not an mlpot model file (bad format_version {version!r})", src)
    if version > FORMAT_VERSION:
        raise ModelFormatError(f"written by a newer mlpot (format {version} > {FORMAT_VERSION}); upgrade mlpot", src)
    units = data.get("units", UNITS)
    if units != UNITS:
        raise ModelFormatError(f"units {units!r} are not supported (mlpot works in {UNITS!r})", src)
    return data, src


def read_info(path) -> dict:
    """Everything in a model file except the tensors: versions, elements, cutoff, units, dtype,
    class names and configs, ``metadata`` and ``extra``."""
    data, _ = _read(path)
    return _info(data)


def _info(data: dict) -> dict:
    out = {k: v for k, v in data.items() if k not in ("descriptor", "scaler", "head", "committee")}
    for part in ("descriptor", "scaler", "head"):
        entry = data.get(part)
        if isinstance(entry, dict):
            out[part] = {k: v for k, v in entry.items() if k != "state"}
    if isinstance(data.get("committee"), list):  # a committee: each member's classes, configs, metadata, extra
        out["committee"] = [_info(m) if isinstance(m, dict) else m for m in data["committee"]]
    return out


def _build(registry: dict, kind: str, entry, src: str):
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str):
        raise ModelFileError(f"malformed mlpot model file: '{kind}' entry has no class name", src)
    name = entry["class"]
    cls = registry.get(name)
    if cls is None:
        known = ", ".join(sorted(registry)) or "none"
        raise ModelFormatError(
            f"unknown {kind} class '{name}' (this mlpot knows {known}); upgrade mlpot or register it "
            f"with mlpot.export.register_{kind}",
            src,
        )
    config = entry.get("config", {})
    if not isinstance(config, dict):
        raise ModelFileError(f"malformed mlpot model file: {kind} config is not a dict", src)
    try:
        return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)
    except Exception as e:
        raise ModelFileError(f"malformed mlpot model file: cannot build {kind} {name} ({_oneline(e)})", src) from None


def _load_state(module, kind: str, entry: dict, src: str) -> None:
    state = entry.get("state", {})
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"malformed mlpot model file: {kind} state is not a dict of tensors", src)
    try:
        # assign=True keeps the saved tensors (and so their dtypes) as they are
        module.load_state_dict(state, strict=True, assign=True)
    except Exception as e:
        raise ModelFileError(f"malformed mlpot model file: {kind} state does not fit ({_oneline(e)})", src) from None


def load(path, map_location="cpu") -> Potential | Committee:
    """Rebuild the :class:`~mlpot.Potential` saved by :func:`save` (same dtype; on ``map_location``), or the
    :class:`~mlpot.models.committee.Committee` saved by :func:`save_committee`.

    ``path``: the model file, or a directory holding ``model.pt``. Raises
    :class:`~mlpot.errors.ModelFileError` (file missing, not an mlpot model, malformed) or
    :class:`ModelFormatError` (newer format, unknown descriptor/head class); messages name the file.
    """
    data, src = _read(path, map_location)
    committee = data.get("committee")
    if committee is None:
        return _potential(data, src)
    if not isinstance(committee, list) or not all(isinstance(m, dict) for m in committee):
        raise ModelFileError("malformed mlpot model file: 'committee' is not a list of members", src)
    members = []
    for k, m in enumerate(committee):
        part = {**data, "scaler": m.get("scaler"), "head": m.get("head"), "metadata": m.get("metadata", {})}
        members.append(_potential(part, f"{src}, committee member {k}"))
    metadata = data.get("metadata", {})
    try:
        return Committee(members, metadata=metadata if isinstance(metadata, dict) else {},
                         names=[f"member {k}" for k in range(len(members))]).eval()
    except CommitteeError as e:
        raise ModelFileError(f"malformed committee: {e}", src) from None


def _potential(data: dict, src: str) -> Potential:
    """The Potential of a checked model dict (one model, or one committee member with the shared descriptor)."""
    dtype_name = data.get("dtype")
    dtype = getattr(torch, dtype_name, None) if isinstance(dtype_name, str) else None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ModelFileError(f"malformed mlpot model file: bad dtype {dtype_name!r}", src)
    elements = data.get("elements")
    if not isinstance(elements, list) or not elements or not all(isinstance(e, str) for e in elements):
        raise ModelFileError("malformed mlpot model file: bad element list", src)
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ModelFileError("malformed mlpot model file: metadata is not a dict", src)

    descriptor = _build(DESCRIPTORS, "descriptor", data.get("descriptor"), src)
    scaler = _build(SCALERS, "scaler", data.get("scaler"), src)
    head = _build(HEADS, "head", data.get("head"), src)
    if list(getattr(descriptor, "elements", elements)) != elements:
        raise ModelFileError(
            f"malformed mlpot model file: descriptor elements {descriptor.elements} != {elements}", src
        )
    cutoff = data.get("cutoff")
    if isinstance(cutoff, (int, float)) and not math.isclose(float(descriptor.cutoff), cutoff, rel_tol=1e-12):
        raise ModelFileError(
            f"malformed mlpot model file: descriptor cutoff {descriptor.cutoff} != saved cutoff {cutoff}", src
        )
    try:
        potential = Potential(elements, descriptor, head, scaler, metadata=metadata)
    except Exception as e:
        detail = _oneline(e)
        raise ModelFileError(f"malformed mlpot model file: cannot assemble the potential ({detail})", src) from None
    potential.to(dtype)  # non-persistent buffers as in the saved model
    for kind, module in (("descriptor", descriptor), ("scaler", scaler), ("head", head)):
        _load_state(module, kind, data[kind], src)
    potential.to(potential.device)  # the loaded tensors sit on map_location; move the rebuilt buffers too
    if potential.dtype != dtype:
        raise ModelFileError(f"malformed mlpot model file: dtype {dtype_name} but scaler in {potential.dtype}", src)
    shape = (len(elements), getattr(descriptor, "n_features", scaler.a.shape[1]))
    if tuple(scaler.a.shape) != shape:
        raise ModelFileError(f"malformed mlpot model file: scaler shape {tuple(scaler.a.shape)} != {shape}", src)
    return potential.eval()


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFileError",
    "ModelFormatError",
    "ModelFileNotFoundError",
    "load",
    "read_info",
    "register_descriptor",
    "register_head",
    "register_scaler",
    "save",
    "save_committee",
    "to_dict",
]
