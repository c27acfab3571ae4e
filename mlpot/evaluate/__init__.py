"""Property recipes ``(atoms, calculator, **options) -> dict`` and the model-vs-reference report."""

from mlpot.evaluate.dynamics import diffusion, diffusion_from_msd, msd, nve_drift
from mlpot.evaluate.static import elastic_constants, equation_of_state, surface_energies, vacancy_formation
from mlpot.evaluate.structure import adaptive_cna, bond_distributions, crystalline_fraction, rdf, time_to_fraction

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

__all__ = ["RECIPES", "adaptive_cna", "bond_distributions", "crystalline_fraction", "diffusion",
           "diffusion_from_msd", "elastic_constants", "equation_of_state", "msd", "nve_drift", "rdf",
           "surface_energies", "time_to_fraction", "vacancy_formation"]
