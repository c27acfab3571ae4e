"""The static part of the evaluation suite on the mlearn benchmark's Mo (bcc) and Si (diamond):
models trained with ``experiment=mlearn`` against the benchmark's n2p2 potentials (Zuo et al.,
J. Phys. Chem. A 124, 731 (2020)), every value with its uncertainty; prints a markdown table.

    OMP_NUM_THREADS=1 python scripts/evaluate_mlearn.py --mo /work/runs/mo_new/model.pt --si /work/runs/si/model.pt \\
        --data /work/shared/data/mlearn [--out docs/results/evaluate_mlearn.json]

The crystal and its starting lattice constant are inferred from each model's training data
(mlpot.evaluate.crystal.resolve); the n2p2 files are in Bohr and Hartree (see the data's README).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

from mlpot.calculator import MLPotCalculator
from mlpot.evaluate.crystal import resolve
from mlpot.evaluate.report import compare, markdown
from mlpot.evaluate.suite import run_suite
from mlpot.io import n2p2
from mlpot.units import BOHR, HARTREE

SUITE = {
    "element": "auto", "crystal": "auto", "a": "auto",
    "eos": {"strain": 0.02, "n_points": 9},
    "elastic": {"delta": 0.002, "n_steps": 5, "relax": True, "fmax": 1e-4},
    "surfaces": {"millers": None, "min_thickness": 12.0, "size": [1, 1], "vacuum": 10.0, "fmax": 0.01, "steps": 300},
    "vacancy": {"repeat": None, "fmax": 0.01, "steps": 300},
    "nve": {"enabled": False}, "liquid": {"enabled": False},
}
MIN_VACANCY_ATOMS = 100


def evaluate(model_path: str, n2p2_folder: str) -> tuple[str, dict]:
    suite, note = resolve(SUITE, model_path)
    per_cell = {"fcc": 4, "bcc": 2, "diamond": 8, "hcp": 2}[suite["crystal"]]
    k = math.ceil((MIN_VACANCY_ATOMS / per_cell) ** (1 / 3))
    suite["vacancy"] = {**suite["vacancy"], "repeat": [k, k, k]}
    model = MLPotCalculator(model_path, dtype="float64")
    reference = MLPotCalculator(n2p2.load(n2p2_folder, length_unit=BOHR, energy_unit=HARTREE), dtype="float64")
    t0 = time.perf_counter()
    ref, ref_curves = run_suite(reference, suite, None, name="n2p2")
    mod, mod_curves = run_suite(model, suite, None, name="model")
    table = compare(mod, ref)
    notes = [note, f"vacancy supercell {k}x{k}x{k} conventional cells ({k ** 3 * per_cell} atoms)",
             f"wall time {time.perf_counter() - t0:.0f} s; sections (s): model "
             f"{ {s: round(v) for s, v in mod_curves['timings_s'].items()} }, n2p2 "
             f"{ {s: round(v) for s, v in ref_curves['timings_s'].items()} }"]
    return markdown(table, model_path, f"n2p2 {n2p2_folder}", notes), {"table": table, "suite": suite}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mo", default="/work/runs/mo_new/model.pt")
    p.add_argument("--si", default="/work/runs/si/model.pt")
    p.add_argument("--data", default="../shared/data/mlearn")
    p.add_argument("--only", choices=["Mo", "Si"], default=None)
    p.add_argument("--out", default=None, help="results JSON")
    args = p.parse_args()
    results, t0 = {}, time.perf_counter()
    for element, model in (("Mo", args.mo), ("Si", args.si)):
        if args.only and element != args.only:
            continue
        t1 = time.perf_counter()
        text, res = evaluate(model, str(Path(args.data) / element / "n2p2"))
        res["wall_s"] = time.perf_counter() - t1
        results[element] = res
        print(f"## {element}\n\n{text}\nwall time {res['wall_s']:.0f} s\n", flush=True)
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, total {time.perf_counter() - t0:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
