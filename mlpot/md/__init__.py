"""Molecular dynamics with ASE's integrators over any ASE calculator (the ML model, a committee, an n2p2 potential,
EMT, EAM, any ASE calculator by ``_target_``)."""

from mlpot.md.calculators import CommitteeCalculator, MonitoredCalculator, make_calculator
from mlpot.md.ensembles import Ensemble, make_ensemble
from mlpot.md.runner import ENSEMBLES, make_dynamics, run_md, thermalize
from mlpot.md.structures import fix_atoms, make_structure, melt, region_mask

__all__ = ["ENSEMBLES", "Ensemble", "make_ensemble", "CommitteeCalculator", "MonitoredCalculator", "fix_atoms", "make_calculator",
           "make_dynamics", "make_structure", "melt", "region_mask", "run_md", "thermalize"]
