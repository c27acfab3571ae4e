"""Thermodynamic ensembles as config objects (``_target_: mlpot.md.ensembles.Langevin``), in the units of the
configs (fs, K, GPa). Each names its integrator (:data:`mlpot.md.runner.ENSEMBLES`) and its options; the ASE
runner (:func:`mlpot.md.runner.make_dynamics`) and the LAMMPS writer (:mod:`mlpot.md.lammps`) build the same
thermostat from them. The old ``{"kind": "langevin", ...}`` form maps to these (:func:`ensemble_config`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

from mlpot.errors import SimulationConfigError


@dataclasses.dataclass
class Ensemble:
    name: ClassVar[str] = ""

    @property
    def options(self) -> dict:
        return dataclasses.asdict(self)

    def dynamics(self, atoms, timestep_fs: float, temperature_K: float | None = None, rng=None):
        """The ASE dynamics object of this ensemble for ``atoms``."""
        from mlpot.md.runner import make_dynamics

        return make_dynamics(atoms, self.name, timestep_fs, temperature_K, rng, **self.options)


@dataclasses.dataclass
class NVE(Ensemble):
    """Velocity Verlet (constant energy)."""

    name: ClassVar[str] = "nve"


@dataclasses.dataclass
class Langevin(Ensemble):
    """ASE's Langevin thermostat; ``friction_per_fs``: the friction in 1/fs."""

    name: ClassVar[str] = "langevin"
    friction_per_fs: float = 0.01


@dataclasses.dataclass
class Bussi(Ensemble):
    """Bussi's stochastic velocity rescaling; ``taut_fs``: the thermostat's time constant."""

    name: ClassVar[str] = "bussi"
    taut_fs: float = 100.0


@dataclasses.dataclass
class NoseHoover(Ensemble):
    """Nosé-Hoover chains (NVT); ``tdamp_fs``: the thermostat's time constant, ``tchain``: its length."""

    name: ClassVar[str] = "nose_hoover"
    tdamp_fs: float = 100.0
    tchain: int = 3


@dataclasses.dataclass
class NPT(Ensemble):
    """ASE's IsotropicMTKNPT (Nosé-Hoover chains for thermostat and barostat)."""

    name: ClassVar[str] = "npt"
    pressure_GPa: float = 0.0
    tdamp_fs: float = 100.0
    pdamp_fs: float = 1000.0
    tchain: int = 3


KINDS = {cls.name: f"{__name__}.{cls.__name__}" for cls in (NVE, Langevin, Bussi, NoseHoover, NPT)}


def ensemble_config(spec: Mapping | str) -> dict:
    """The ``_target_`` config of an ensemble given as one, as a name (``nve``, ``langevin``, ``bussi``,
    ``nose_hoover``, ``npt``) or in the old ``{"kind": ..., options}`` form."""
    if isinstance(spec, str):
        spec = {"kind": spec}
    cfg = dict(spec)
    if "_target_" in cfg:
        return cfg
    kind = str(cfg.pop("kind", "")).lower()
    if kind not in KINDS:
        raise SimulationConfigError(f"ensemble: unknown kind {kind!r} (choose from {', '.join(KINDS)}, or give _target_)")
    return {"_target_": KINDS[kind], **cfg}


def make_ensemble(cfg: Mapping | str) -> Ensemble:
    """The :class:`Ensemble` of a config (see :func:`ensemble_config`)."""
    from mlpot.cli import instantiate_config

    conf = ensemble_config(cfg)
    ens = instantiate_config(conf, "ensemble")
    if not isinstance(ens, Ensemble):
        raise SimulationConfigError(f"ensemble: _target_ {conf['_target_']} built a {type(ens).__name__}, not one of "
                                    f"mlpot.md.ensembles ({', '.join(v.rsplit('.', 1)[1] for v in KINDS.values())})")
    return ens
