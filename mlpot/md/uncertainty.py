"""A committee's spread during MD: the per-atom force spread of the last calculation, and the collector that writes
the frames whose spread lies in a band (the frames worth labelling, for active learning).

The spread comes from the calculator's ``forces_std`` (eV/Å per atom, the norm of the per-component standard
deviation over the members): a committee ``model.pt`` in :class:`~mlpot.calculator.MLPotCalculator`, or
``md/calculator=committee`` (separately loaded members). Other calculators give none, and then nothing here acts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mlpot.errors import SimulationConfigError

COLLECT_KEYS = ("lower", "upper", "interval", "file")


def force_spread(calculator) -> tuple[float, float] | None:
    """(largest, mean) per-atom force spread in eV/Å of the calculator's last results; None without a spread."""
    results = getattr(calculator, "results", None) or {}
    fstd = results.get("forces_std")
    if fstd is None:
        return None
    fstd = np.asarray(fstd, dtype=np.float64)
    if fstd.size == 0:
        return 0.0, 0.0
    return float(fstd.max()), float(fstd.mean())


def _threshold(cfg: Mapping, key: str) -> float | None:
    value = cfg.get(key)
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not math.isfinite(v) or v < 0:
        raise SimulationConfigError(f"collect.{key} must be a number >= 0 (eV/Å) or null, got {value!r}")
    return v


class Collector:
    """Writes the frames whose largest per-atom force spread σ is in [``lower``, ``upper``) to ``file`` (extxyz, in
    the output folder; each frame with ``step`` and ``max_force_std`` in its info and ``forces_std`` per atom), at
    most one every ``interval`` steps. Inactive when ``lower`` is null."""

    def __init__(self, out: Path, cfg: Mapping | None, append: bool = False):
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(COLLECT_KEYS))
        if unknown:
            raise SimulationConfigError(f"collect: unknown key(s) {', '.join(unknown)} (known: {', '.join(COLLECT_KEYS)})")
        self.lower, self.upper = _threshold(cfg, "lower"), _threshold(cfg, "upper")
        if self.lower is not None and self.upper is not None and not self.upper > self.lower:
            raise SimulationConfigError(f"collect.upper ({self.upper}) must be above collect.lower ({self.lower})")
        interval = cfg.get("interval", 1)
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise SimulationConfigError(f"collect.interval must be an integer >= 1, got {interval!r}")
        self.interval = interval
        self.path = Path(out) / str(cfg.get("file") or "uncertain.extxyz")
        self.count = 0
        self._last = None
        if self.active and not append and self.path.exists():
            self.path.unlink()

    @property
    def active(self) -> bool:
        return self.lower is not None

    @property
    def path_str(self) -> str | None:
        return str(self.path) if self.active else None

    def offer(self, step: int, sigma: float, frame, forces_std=None) -> bool:
        """Write ``frame()`` when ``sigma`` is in the band and ``interval`` steps have passed since the last one."""
        if not self.active or sigma < self.lower or (self.upper is not None and sigma >= self.upper):
            return False
        if self._last is not None and step - self._last < self.interval:
            return False
        import ase.io

        atoms = frame()
        atoms.info["max_force_std"] = float(sigma)
        if forces_std is not None:
            atoms.arrays["forces_std"] = np.asarray(forces_std, dtype=np.float64)
        with open(self.path, "a") as f:
            ase.io.write(f, atoms, format="extxyz")
        self._last = step
        self.count += 1
        return True

    def close(self) -> None:
        pass


__all__ = ["COLLECT_KEYS", "Collector", "force_spread"]
