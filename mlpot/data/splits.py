"""Train / validation / test splits of a list of frames, as index lists.

``split_frames(frames, kind=...)`` with

* ``"random"``: a seeded permutation; train takes round(n * fractions[0]) frames and
  the rest is shared between val and test in proportion ``fractions[1]:fractions[2]``;
* ``"config_type"``: whole config_types go to a split; ``val_types`` and
  ``test_types`` list config_type names (fnmatch wildcards allowed, e.g.
  ``"Volume_*"``); every other frame is train;
* ``"tail"``: time-ordered, per trajectory. Frames are grouped by
  ``info['trajectory']`` (else ``info['config_type']``, else one group) and put
  in time order (``info['step']`` if every frame of the group has it, else file
  order); the first ``fractions[0]`` of each group goes to train and the rest,
  still in time order, to val then test in proportion ``fractions[1]:fractions[2]``.

``carve_validation(train_indices, fraction, seed)`` draws a validation set out of
a training set, for when the test set is a separate file.

A split that leaves train or validation empty raises :class:`SplitError` (a
``DataError``) naming the data source and the kind of split; bad fractions raise
``ValueError``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence

import numpy as np
from ase import Atoms

from mlpot.errors import DataError

KINDS = ("random", "config_type", "tail")
SPLITS = ("train", "val", "test")


class SplitError(DataError):
    """A split that cannot be made from the data (an empty train or validation set, ...)."""


def check_fractions(fractions) -> tuple[float, float, float]:
    """Three non-negative fractions (train, val, test) summing to 1 (within 1e-6)."""
    try:
        f = tuple(float(x) for x in fractions)
    except (TypeError, ValueError):
        raise ValueError(f"fractions must be three numbers (train, val, test), got {fractions!r}") from None
    if len(f) != 3:
        raise ValueError(f"fractions must be three numbers (train, val, test), got {len(f)}: {fractions!r}")
    if not all(math.isfinite(x) for x in f) or any(x < 0 for x in f):
        raise ValueError(f"fractions must be finite and non-negative, got {fractions!r}")
    if abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {sum(f):.6g})")
    return f


def _cuts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """Boundaries (b1, b2): [0, b1) train, [b1, b2) val, [b2, n) test.

    Train gets round(n * f_train); the rest is shared between val and test in proportion
    f_val : f_test (halves rounded up in favour of val). With f_val > 0, a set of two or more
    frames always keeps one validation frame (taken from test, else from train).
    """
    b1 = min(n, math.floor(n * fractions[0] + 0.5))
    rest = n - b1
    share = fractions[1] + fractions[2]
    n_val = rest if fractions[2] == 0 else 0 if share == 0 else math.floor(rest * fractions[1] / share + 0.5)
    n_val = min(rest, n_val)
    if fractions[1] > 0 and n_val == 0 and n >= 2:  # keep one validation frame (from test, else from train)
        if rest == 0:
            b1 -= 1
        n_val = 1
    return b1, b1 + n_val


def _source_of(frames, source):
    if source is not None:
        return str(source)
    if len(frames) and isinstance(frames[0], Atoms):
        return frames[0].info.get("mlpot_source")
    return None


def _check_nonempty(out: dict, source, what: str) -> dict:
    for name, label in (("train", "training"), ("val", "validation")):
        if not out[name]:
            n = sum(len(v) for v in out.values())
            raise SplitError(f"{what} leaves the {label} set empty ({n} frames)", source)
    return out


def _matches(value, patterns) -> bool:
    return value is not None and any(fnmatch.fnmatchcase(str(value), p) for p in patterns)


def _split_random(n: int, fractions, seed) -> dict:
    perm = np.random.default_rng(seed).permutation(n)
    b1, b2 = _cuts(n, fractions)
    return {"train": sorted(perm[:b1].tolist()), "val": sorted(perm[b1:b2].tolist()),
            "test": sorted(perm[b2:].tolist())}


def _split_config_type(types, val_types, test_types, source) -> dict:
    val_types = [val_types] if isinstance(val_types, str) else list(val_types or [])
    test_types = [test_types] if isinstance(test_types, str) else list(test_types or [])
    present = sorted({str(t) for t in types if t is not None})
    for name, patterns in (("val_types", val_types), ("test_types", test_types)):
        for p in patterns:
            if not any(fnmatch.fnmatchcase(t, p) for t in present):
                have = ", ".join(present[:10]) + (f", ... ({len(present)} in all)" if len(present) > 10 else "")
                msg = f"config_type split: {name} entry '{p}' matches no config_type (present: {have or 'none'})"
                raise SplitError(msg, source)
    out = {"train": [], "val": [], "test": []}
    verdict = {}
    for k, t in enumerate(types):
        if t not in verdict:
            in_val, in_test = _matches(t, val_types), _matches(t, test_types)
            if in_val and in_test:
                raise ValueError(f"config_type '{t}' matches both val_types {val_types} and test_types {test_types}")
            verdict[t] = "val" if in_val else "test" if in_test else "train"
        out[verdict[t]].append(k)
    return out


def _group_key(trajectory, config_type):
    if trajectory is not None:
        return ("trajectory", trajectory)
    if config_type is not None:
        return ("config_type", config_type)
    return ("all",)


def trajectory_groups(trajectory: Sequence, config_type: Sequence, step: Sequence) -> list[list[int]]:
    """Frame indices grouped by trajectory (else config_type, else one group; first-appearance order), each
    group in time order (``step`` where every frame of the group has one, else file order). The columns
    hold one entry per frame, None where a frame has no such value."""
    groups: dict = {}
    for k, (t, c) in enumerate(zip(trajectory, config_type)):
        groups.setdefault(_group_key(t, c), []).append(k)
    out = []
    for idx in groups.values():
        if all(step[k] is not None for k in idx):
            idx = sorted(idx, key=lambda k: (step[k], k))
        out.append(idx)
    return out


def _columns(frames: Sequence[Atoms]) -> dict:
    return {"config_type": [f.info.get("config_type") for f in frames],
            "trajectory": [f.info.get("trajectory") for f in frames],
            "step": [f.info.get("step") for f in frames]}


def trajectories(frames: Sequence[Atoms]) -> list[list[int]]:
    """Frame indices grouped by trajectory (first-appearance order), each group in time order."""
    c = _columns(frames)
    return trajectory_groups(c["trajectory"], c["config_type"], c["step"])


def _split_tail(groups, fractions) -> dict:
    out = {"train": [], "val": [], "test": []}
    for idx in groups:
        b1, b2 = _cuts(len(idx), fractions)
        out["train"] += idx[:b1]
        out["val"] += idx[b1:b2]
        out["test"] += idx[b2:]
    return out


def split_table(
    n: int,
    kind: str = "random",
    fractions=(0.8, 0.1, 0.1),
    seed: int = 0,
    source: str | None = None,
    *,
    config_type: Sequence | None = None,
    trajectory: Sequence | None = None,
    step: Sequence | None = None,
    val_types=None,
    test_types=None,
) -> dict[str, list[int]]:
    """:func:`split_frames` from per-frame columns (one entry per frame, None where absent) instead of frames,
    for data read lazily from a store: ``config_type`` is needed by the ``config_type`` split, all three by
    ``tail``."""
    fractions = check_fractions(fractions)
    none = [None] * n
    config_type = none if config_type is None else config_type
    if kind == "random":
        out = _split_random(n, fractions, seed)
    elif kind == "config_type":
        if not val_types:
            raise SplitError("config_type split needs val_types (config_types for validation)", source)
        out = _split_config_type(config_type, val_types, test_types, source)
    elif kind == "tail":
        groups = trajectory_groups(none if trajectory is None else trajectory, config_type,
                                   none if step is None else step)
        out = _split_tail(groups, fractions)
    else:
        raise ValueError(f"unknown split kind {kind!r} (known: {', '.join(KINDS)})")
    return _check_nonempty(out, source, f"{kind} split")


def split_frames(
    frames: Sequence[Atoms],
    kind: str = "random",
    fractions=(0.8, 0.1, 0.1),
    seed: int = 0,
    source: str | None = None,
    *,
    val_types=None,
    test_types=None,
) -> dict[str, list[int]]:
    """Indices of ``frames`` for "train", "val" and "test" (disjoint, together all frames).

    ``random`` and ``config_type`` indices are ascending; ``tail`` indices are grouped by
    trajectory, each in time order. ``fractions`` is (train, val, test) for ``random`` and
    ``tail`` (ignored by ``config_type``, which uses ``val_types`` / ``test_types``).
    ``source`` names the data in error messages (default: the frames' ``mlpot_source``).
    """
    return split_table(len(frames), kind, fractions, seed, _source_of(frames, source), **_columns(frames),
                       val_types=val_types, test_types=test_types)


def carve_validation(
    train_indices: Sequence[int], fraction: float = 0.1, seed: int = 0, source: str | None = None
) -> tuple[list[int], list[int]]:
    """Split ``train_indices`` into (train, val) with a seeded random ``fraction`` for validation.

    For a test set that comes from a separate file: train on the rest of the training file,
    validate on the carved part. Both returned lists keep the input order.
    """
    fraction = float(fraction)
    if not (math.isfinite(fraction) and 0.0 < fraction < 1.0):
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction!r}")
    idx = list(train_indices)
    n = len(idx)
    n_val = math.floor(n * fraction + 0.5)
    chosen = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    out = {"train": [i for k, i in enumerate(idx) if k not in chosen],
           "val": [i for k, i in enumerate(idx) if k in chosen], "test": []}
    _check_nonempty(out, None if source is None else str(source), f"random validation split ({fraction:g} of {n})")
    return out["train"], out["val"]
