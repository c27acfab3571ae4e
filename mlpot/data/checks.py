"""The data check at load time: what would train a wrong model with exit code 0 is an error, the rest a warning
naming the file and frame, and ``data.checks`` relaxes each (``error``, ``warn`` or ``off``).

* **elements seen only outside training**: an element with atoms in the validation or test split but none in the
  training split would get an untrained network and E0 = 0 (error);
* **energy outliers**: frames whose energy per atom lies far from the least-squares composition fit (E0), by
  more than ``outlier_mads`` robust standard deviations (1.4826 × the median absolute deviation) *and* more
  than ``outlier_ev`` eV/atom; in training frames one such frame shifts E0 and the fit of every other frame
  (error), in validation or test frames it distorts the metrics (warning);
* **duplicates across splits**: frames identical in species, positions, cell and periodicity (the store's frame
  hash) in training and in validation or test: the metrics would measure memory (warning);
* **short distances**: atoms closer than ``short_distance`` Å (0.1 Å stops the conversion already): a broken
  unit conversion or overlapping atoms (warning).

Every check reads only per-frame columns of the store (composition, energies, hashes, shortest distances), so it
costs O(frames), not O(atoms × epochs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from ase.data import chemical_symbols

from mlpot.data.statistics import reference_energies
from mlpot.errors import ConfigError, DataError

log = logging.getLogger(__name__)
LEVELS = ("error", "warn", "off")


class DataCheckError(DataError):
    """Data that would train a wrong model (names the file and frame, and the switch that relaxes the check)."""


@dataclass
class DataChecks:
    unseen_elements: str = "error"
    energy_outliers: str = "error"
    outlier_mads: float = 50.0
    outlier_ev: float = 1.0
    duplicates: str = "warn"
    short_distance: float = 0.5

    def __post_init__(self):
        for key in ("unseen_elements", "energy_outliers", "duplicates"):
            if getattr(self, key) not in LEVELS:
                raise ConfigError(f"data.checks.{key}", f"must be one of {', '.join(LEVELS)}, got {getattr(self, key)!r}")
        for key in ("outlier_mads", "outlier_ev", "short_distance"):
            try:
                value = float(getattr(self, key))
            except (TypeError, ValueError):
                raise ConfigError(f"data.checks.{key}", f"must be a number, got {getattr(self, key)!r}") from None
            if not value >= 0:
                raise ConfigError(f"data.checks.{key}", f"must be >= 0, got {value}")
            setattr(self, key, value)


def _say(level: str, message: str, source=None, frame=None, key: str = "") -> None:
    if level == "off":
        return
    if level == "error":
        raise DataCheckError(f"{message} (data.checks.{key}=warn to train anyway)", source, frame)
    from mlpot.errors import where

    log.warning("%s%s", where(source, frame), message)


def check_data(dm, checks: DataChecks | dict | None = None) -> dict:
    """Run the checks on a loaded data module (``AtomsDataModule``); returns a summary (per-element atom counts per
    split, the number of duplicates, outliers and short-distance frames). Raises :class:`DataCheckError`."""
    checks = checks if isinstance(checks, DataChecks) else DataChecks(**(checks or {}))
    store = dm.open_store()
    splits = dm.load()
    elements_z = dm.elements_z
    comp = store.composition(elements_z)
    counts = {name: comp[idx].sum(0) for name, idx in splits.items()}
    log.info("atoms per element and split: %s", "; ".join(
        f"{chemical_symbols[z]} " + "/".join(f"{int(counts[s][k])}" for s in splits) for k, z in enumerate(elements_z))
        + f" ({'/'.join(splits)})")
    out = {"atoms": {s: {chemical_symbols[z]: int(c[k]) for k, z in enumerate(elements_z)} for s, c in counts.items()}}

    # elements that training never sees
    for name, idx in splits.items():
        if name == "train":
            continue
        for k, z in enumerate(elements_z):
            if counts[name][k] > 0 and counts["train"][k] == 0:
                first = int(idx[np.flatnonzero(comp[idx, k] > 0)[0]])
                _say(checks.unseen_elements, f"element {chemical_symbols[z]} appears in the {name} split "
                     f"({int(counts[name][k])} atoms) but in no training frame: its network would stay untrained "
                     "and its E0 zero", *store.source_of(first), key="unseen_elements")

    # energy outliers against the least-squares composition fit
    has = store.has("energy")
    energies = store.energies()
    train = splits["train"][has[splits["train"]]]
    out["outliers"] = 0
    if len(train) >= 4 and checks.energy_outliers != "off":
        e0 = np.asarray(reference_energies(store, train, elements_z))  # the E0 fit training will use
        n_atoms = store.n_atoms.astype(float)
        residual = (energies - comp.astype(float) @ e0) / n_atoms
        med = np.median(residual[train])
        scale = 1.4826 * np.median(np.abs(residual[train] - med))
        dev = np.abs(residual - med)
        bad = (dev > checks.outlier_mads * max(scale, 1e-12)) & (dev > checks.outlier_ev) & has
        for name, idx in splits.items():
            flagged = idx[bad[idx]]
            out["outliers"] += len(flagged)
            if len(flagged):
                worst = int(flagged[np.argmax(dev[flagged])])
                level = checks.energy_outliers if name == "train" else ("warn" if checks.energy_outliers != "off" else "off")
                _say(level, f"energy {energies[worst]:.6g} eV is {residual[worst] - med:+.4g} eV/atom off the "
                     f"composition fit ({dev[worst] / max(scale, 1e-12):.3g} robust standard deviations; "
                     f"{len(flagged)} such frame(s) in the {name} split)", *store.source_of(worst),
                     key="energy_outliers")

    # duplicates across splits
    out["duplicates"] = 0
    if checks.duplicates != "off":
        hashes = store.frame_hashes()
        seen = set(hashes[splits["train"]].tolist())
        for name, idx in splits.items():
            if name == "train":
                continue
            dup = [int(k) for k in idx if hashes[k] in seen]
            out["duplicates"] += len(dup)
            if dup:
                _say(checks.duplicates, f"{len(dup)} frame(s) of the {name} split are identical to training frames "
                     f"(species, positions, cell): its metrics would measure memory", *store.source_of(dup[0]),
                     key="duplicates")

    # atoms closer than a physical bond
    shortest = store.shortest()
    close = np.flatnonzero(shortest < checks.short_distance)
    out["short"] = len(close)
    if len(close):
        k = int(close[np.argmin(shortest[close])])
        log.warning("%s: atoms %.3g Å apart (%d frame(s) with atoms closer than data.checks.short_distance=%g Å)",
                    "%s, frame %d" % store.source_of(k), shortest[k], len(close), checks.short_distance)
    return out


__all__ = ["DataChecks", "DataCheckError", "check_data"]
