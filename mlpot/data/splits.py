"""Train/validation/test splits: random, by config_type, and the Na study's time-ordered tail."""

from __future__ import annotations

import fnmatch

import numpy as np

from mlpot.errors import DataError


class SplitError(DataError):
    """A split that leaves a needed part empty."""


def _check_fractions(fractions):
    f = [float(x) for x in fractions]
    if len(f) != 3 or any(x < 0 for x in f) or abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    return f


def split_frames(frames, kind="random", fractions=(0.8, 0.1, 0.1), seed=0, source=None, val_types=None,
                 test_types=None) -> dict[str, list[int]]:
    n = len(frames)
    if kind == "random":
        f = _check_fractions(fractions)
        order = np.random.default_rng(seed).permutation(n).tolist()
        n_val, n_test = int(round(f[1] * n)), int(round(f[2] * n))
        out = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    elif kind == "config_type":
        match = lambda a, pats: any(fnmatch.fnmatch(str(a.info.get("config_type", "")), p) for p in pats or [])  # noqa
        out = {"train": [], "val": [], "test": []}
        for k, a in enumerate(frames):
            out["test" if match(a, test_types) else "val" if match(a, val_types) else "train"].append(k)
    elif kind == "tail":
        f = _check_fractions(fractions)
        groups: dict = {}
        for k, a in enumerate(frames):
            key = a.info.get("trajectory", a.info.get("config_type", 0))
            groups.setdefault(key, []).append(k)
        out = {"train": [], "val": [], "test": []}
        for idx in groups.values():
            idx = sorted(idx, key=lambda k: (frames[k].info.get("step", k), k))
            n_tr = int(round(f[0] * len(idx)))
            rest = idx[n_tr:]
            n_val = int(round(len(rest) * f[1] / max(f[1] + f[2], 1e-12)))
            out["train"] += idx[:n_tr]
            out["val"] += rest[:n_val]
            out["test"] += rest[n_val:]
    else:
        raise ValueError(f"unknown split kind '{kind}' (random, config_type or tail)")
    for part in ("train", "val"):
        if not out[part]:
            raise SplitError(f"the '{kind}' split leaves the {part} set empty", source)
    return out


def carve_validation(train_indices, fraction=0.1, seed=0, source=None):
    """(train, val) from a list of indices: a seeded random ``fraction`` becomes validation."""
    idx = list(train_indices)
    order = np.random.default_rng(seed).permutation(len(idx)).tolist()
    n_val = int(round(fraction * len(idx)))
    if n_val == 0 or n_val == len(idx):
        raise SplitError(f"validation fraction {fraction} of {len(idx)} frames leaves a set empty", source)
    return [idx[k] for k in order[n_val:]], [idx[k] for k in order[:n_val]]
