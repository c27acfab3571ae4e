"""Property recipes ``(atoms, calculator, **options) -> dict`` and the model-vs-reference report."""

from mlpot.evaluate.dynamics import diffusion, diffusion_from_msd, msd, nve_drift
from mlpot.evaluate.static import elastic_constants, equation_of_state, relax_cell, surface_energies, vacancy_formation
from mlpot.evaluate.structure import (
                                   bond_distributions,
                                   crystalline_fraction,
                                   identify_crystal,
                                   rdf,
                                   structure_fractions,
                                   structure_types,
                                   time_to_fraction,
)

RECIPES = {
    "eos": equation_of_state,
    "elastic": elastic_constants,
    "surfaces": surface_energies,
    "vacancy": vacancy_formation,
    "nve_drift": nve_drift,
    "diffusion": diffusion,
    "rdf": rdf,
    "bonds": bond_distributions,
    "crystalline_fraction": crystalline_fraction,
}

__all__ = ["RECIPES", "bond_distributions", "crystalline_fraction", "diffusion", "diffusion_from_msd",
           "elastic_constants", "equation_of_state", "identify_crystal", "msd", "nve_drift", "rdf", "relax_cell",
           "structure_fractions", "structure_types", "surface_energies", "time_to_fraction", "vacancy_formation"]
