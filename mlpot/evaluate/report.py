"""Comparison of a model's properties with a reference: ``results.json``, ``report.md`` and PNGs."""

from __future__ import annotations

import json
import math
from pathlib import Path

from mlpot.evaluate.suite import UNITS

# the targets: relative error (or, for nve_drift, an absolute bound on the model's value)
TARGETS = {"a0": ("rel", 0.001), "B": ("rel", 0.02), "C11": ("rel", 0.05), "C12": ("rel", 0.05), "C44": ("rel", 0.05),
           "gamma_100": ("rel", 0.03), "gamma_110": ("rel", 0.03), "gamma_111": ("rel", 0.03),
           "E_vac": ("rel", 0.03), "D": ("rel", 0.10), "nve_drift": ("max", 1.0)}


def compare(model: dict, reference: dict) -> dict:
    """``{property: {value, reference, rel_error, unit}}`` for every property the model has."""
    out = {}
    for key, value in model.items():
        ref = reference.get(key)
        rel = None
        if ref is not None and value is not None and math.isfinite(ref) and math.isfinite(value) and ref != 0:
            rel = (value - ref) / abs(ref)
        out[key] = {"value": value, "reference": ref, "rel_error": rel, "unit": UNITS.get(key, "")}
    return out


def verdict(key: str, row: dict) -> str:
    target = TARGETS.get(key)
    if target is None:
        return ""
    kind, bound = target
    if kind == "max":
        return "pass" if row["value"] is not None and row["value"] <= bound else "FAIL"
    if row["rel_error"] is None:
        return "n/a"
    return "pass" if abs(row["rel_error"]) <= bound else "FAIL"


def _fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and (abs(x) < 1e-2 or abs(x) >= 1e4) and x != 0:
        return f"{x:.4g}"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def markdown(table: dict, model: str, reference: str, notes: list[str] = ()) -> str:
    lines = [f"# Property report: `{model}` against `{reference}`", "",
             "| property | unit | model | reference | rel. error | target | verdict |",
             "|---|---|---|---|---|---|---|"]
    for key, row in table.items():
        t = TARGETS.get(key)
        target = "" if t is None else (f"≤ {t[1]:g} {row['unit']}" if t[0] == "max" else f"{100 * t[1]:g} %")
        rel = "–" if row["rel_error"] is None else f"{100 * row['rel_error']:+.2f} %"
        lines.append(f"| {key} | {row['unit']} | {_fmt(row['value'])} | {_fmt(row['reference'])} | {rel} | {target} | "
                     f"{verdict(key, row)} |")
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def plots(curves: dict[str, dict], out: Path) -> list[str]:
    """PNG per curve kind with every calculator's curve on top of each other; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = {
        "eos": ("volumes", "energies", "volume (Å³/atom)", "energy (eV/atom)", "eos.png"),
        "rdf": ("r", "g", "r (Å)", "g(r)", "rdf.png"),
        "msd": ("times_fs", "msd", "time (fs)", "MSD (Å²)", "msd.png"),
        "nve": ("times_ps", "etot_per_atom", "time (ps)", "total energy (eV/atom)", "nve_energy.png"),
        "bond_angles": ("edges", "density", "bond angle (deg)", "density", "bond_angles.png"),
    }
    written = []
    for kind, (xk, yk, xl, yl, fname) in specs.items():
        have = {name: c[kind] for name, c in curves.items() if kind in c}
        if not have:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for name, c in have.items():
            x, y = c[xk], c[yk]
            if kind == "bond_angles":
                x = [(a + b) / 2 for a, b in zip(x[:-1], x[1:])]
            ax.plot(x, y, "o-" if kind == "eos" else "-", ms=3, label=name)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)
        written.append(fname)
    return written


def write_report(out: Path, model_scalars: dict, ref_scalars: dict, curves: dict, model: str, reference: str,
                 notes: list[str] = ()) -> dict:
    out = Path(out)
    table = compare(model_scalars, ref_scalars)
    (out / "results.json").write_text(json.dumps(table, indent=2) + "\n")
    pngs = plots(curves, out)
    notes = [*notes, "", *[f"![{p}]({p})" for p in pngs]]
    (out / "report.md").write_text(markdown(table, model, reference, notes))
    return table
