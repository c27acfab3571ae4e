"""Comparison of a model's properties with a reference: ``results.json``, ``report.md`` and PNGs.

Every property carries its uncertainty σ (``<name>_err`` in the suite's scalars). A verdict is
"pass" only when the difference is resolved, i.e. the combined uncertainty of model and reference
σ_d = √(σ_model² + σ_ref²) is below the target T, and |model − reference| ≤ T; "FAIL" when resolved
and |model − reference| > T; "not resolved" when σ_d ≥ T (more sampling is needed to decide).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from mlpot.evaluate.suite import UNITS

# the targets: relative error (or, for nve_drift, an absolute bound on the model's value)
TARGETS = {"a0": ("rel", 0.001), "B": ("rel", 0.02), "E_vac": ("rel", 0.03), "D": ("rel", 0.10),
           "nve_drift": ("max", 1.0), **{c: ("rel", 0.05) for c in ("C11", "C12", "C13", "C33", "C44")}}
GAMMA_TARGET = ("rel", 0.03)  # every gamma_<facet>


def target(key: str):
    return GAMMA_TARGET if key.startswith("gamma_") else TARGETS.get(key)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def compare(model: dict, reference: dict) -> dict:
    """``{property: {value, value_err, reference, reference_err, difference, difference_err, rel_error,
    target, unit, verdict}}`` for every property of the model (``<name>_err`` entries are uncertainties)."""
    out = {}
    for key, value in model.items():
        if key.endswith("_err"):
            continue
        ref = reference.get(key)
        err_m, err_r = model.get(f"{key}_err"), reference.get(f"{key}_err")
        row = {"value": value, "value_err": err_m, "reference": ref, "reference_err": err_r, "difference": None,
               "difference_err": None, "rel_error": None, "target": None, "unit": UNITS.get(key, "")}
        if _finite(value) and _finite(ref):
            row["difference"] = value - ref
            if err_m is not None and err_r is not None:
                row["difference_err"] = math.hypot(err_m, err_r) if _finite(err_m) and _finite(err_r) else math.inf
            if ref != 0:
                row["rel_error"] = (value - ref) / abs(ref)
        t = target(key)
        if t is not None:
            row["target"] = t[1] * abs(ref) if t[0] == "rel" and _finite(ref) else (t[1] if t[0] == "max" else None)
        row["verdict"] = verdict(key, row)
        out[key] = row
    return out


def verdict(key: str, row: dict) -> str:
    """"pass", "FAIL", "not resolved" (uncertainty ≥ target), "n/a" (no reference) or "" (no target)."""
    t = target(key)
    if t is None:
        return ""
    kind, bound = t
    if kind == "max":  # the model's own value against an absolute bound
        if not _finite(row.get("value")):
            return "n/a"
        err = row.get("value_err")
        if err is None or not _finite(err) or err >= bound:
            return "not resolved"
        return "pass" if row["value"] <= bound else "FAIL"
    if not _finite(row.get("value")) or not _finite(row.get("reference")) or row["reference"] == 0:
        return "n/a"
    tol = bound * abs(row["reference"])
    err_m, err_r = row.get("value_err"), row.get("reference_err")
    if err_m is None or err_r is None or not (_finite(err_m) and _finite(err_r)) or math.hypot(err_m, err_r) >= tol:
        return "not resolved"
    return "pass" if abs(row["value"] - row["reference"]) <= tol else "FAIL"


def _fmt(x, err=None) -> str:
    if x is None:
        return "–"
    if not isinstance(x, float):
        return str(x)
    if err is not None and _finite(err) and err > 0 and _finite(x):
        digits = max(0, min(8, 1 - math.floor(math.log10(err))))  # two significant digits of the error
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.3e} ± {err:.2g}"
        return f"{x:.{digits}f} ± {err:.{digits}f}"
    text = f"{x:.4g}" if (abs(x) < 1e-2 or abs(x) >= 1e4) and x != 0 else f"{x:.4f}"
    return text if err is None else f"{text} ± {'∞' if not _finite(err) else 0}"


def markdown(table: dict, model: str, reference: str, notes: list[str] = ()) -> str:
    lines = [f"# Property report: `{model}` against `{reference}`", "",
             "Values are ± one standard error (see docs/evaluation.md). Verdict: *pass* when the combined "
             "uncertainty is below the target and |difference| ≤ target; *not resolved* when the uncertainty is "
             "not below the target.", "",
             "| property | unit | model | reference | difference | target | verdict |",
             "|---|---|---|---|---|---|---|"]
    for key, row in table.items():
        t = target(key)
        tgt = "" if t is None else (f"≤ {t[1]:g}" if t[0] == "max" else f"{100 * t[1]:g} %"
                                    + (f" ({row['target']:.3g})" if _finite(row.get("target")) else ""))
        diff = "–" if row["difference"] is None else _fmt(float(row["difference"]), row["difference_err"])
        if row["rel_error"] is not None:
            diff += f" ({100 * row['rel_error']:+.2f} %)"
        lines.append(f"| {key} | {row['unit']} | {_fmt(row['value'], row['value_err'])} | "
                     f"{_fmt(row['reference'], row['reference_err'])} | {diff} | {tgt} | {row['verdict']} |")
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def plots(curves: dict[str, dict], out: Path) -> list[str]:
    """PNG per curve kind with every calculator's curve on top of each other; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = {
        "eos": ("volume (Å³/atom)", "energy (eV/atom)", "eos.png", "equation of state: points and Birch–Murnaghan fit"),
        "rdf": ("r (Å)", "g(r) (dimensionless)", "rdf.png", "liquid radial distribution function"),
        "msd": ("time (ps)", "MSD (Å²)", "msd.png", "liquid mean square displacement"),
        "nve": ("time (ps)", "E(t) − E(0) (meV/atom)", "nve_energy.png", "NVE total energy drift"),
        "bond_angles": ("bond angle (deg)", "probability density (1/deg)", "bond_angles.png", "liquid bond angles"),
    }
    written = []
    for kind, (xl, yl, fname, title) in specs.items():
        have = {name: c[kind] for name, c in curves.items() if kind in c}
        if not have:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for k, (name, c) in enumerate(have.items()):
            color = f"C{k}"
            if kind == "eos":
                ax.plot(c["volumes"], c["energies"], "o", ms=4, color=color, label=f"{name} (points)")
                if "fit_volumes" in c:
                    ax.plot(c["fit_volumes"], c["fit_energies"], "-", color=color, label=f"{name} (fit)")
            elif kind == "rdf":
                ax.plot(c["r"], c["g"], "-", color=color, label=name)
            elif kind == "msd":
                ax.plot([t / 1000 for t in c["times_fs"]], c["msd"], "-", color=color, label=name)
            elif kind == "nve":
                ax.plot(c["times_ps"], [1000 * e for e in c["drift_per_atom"]], "-", color=color, label=name)
            else:
                x = c["edges"]
                ax.plot([(a + b) / 2 for a, b in zip(x[:-1], x[1:])], c["density"], "-", color=color, label=name)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)
        written.append(fname)
    return written


def write_report(out: Path, model_scalars: dict, ref_scalars: dict, curves: dict, model: str, reference: str,
                 notes: list[str] = ()) -> dict:
    out = Path(out)
    table = compare(model_scalars, ref_scalars)
    (out / "results.json").write_text(json.dumps(table, indent=2, default=float) + "\n")
    pngs = plots(curves, out)
    notes = [*notes, "", *[f"![{p}]({p})" for p in pngs]]
    (out / "report.md").write_text(markdown(table, model, reference, notes))
    return table
