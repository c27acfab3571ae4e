"""How well a committee's spread tells its errors: per-atom force spread against the true per-atom force error on
labelled frames, the rank correlation, binned calibration, and the plot.

For atom i, the spread is σ_i = |σ_F,i| (eV/Å, the norm of the per-component standard deviation over the members,
the calculator's ``forces_std``) and the error is e_i = |F̄_i − F_i,ref| (eV/Å, the mean's error). A committee
whose spread were a calibrated Gaussian standard deviation per component would have mean(e_i²) = mean(σ_i²) in
every bin: the binned points then lie on the diagonal of the plot.
"""

from __future__ import annotations

import numpy as np

from mlpot.io.labels import get_label


def committee_errors(calculator, frames) -> dict:
    """Per-atom ``forces_std`` and ``force_error`` (eV/Å), per-frame ``energy_std_per_atom`` and
    ``energy_error_per_atom`` (eV/atom) of a committee calculator on labelled frames (forces and energy labels;
    a frame without forces is skipped)."""
    fstd, ferr, estd, eerr = [], [], [], []
    for atoms in frames:
        ref_f = get_label(atoms, "forces")
        if ref_f is None:
            continue
        a = atoms.copy()
        a.calc = calculator
        forces = a.get_forces()
        results = calculator.results
        if "forces_std" not in results:
            raise ValueError(f"{type(calculator).__name__} gives no forces_std: not a committee")
        fstd.append(np.asarray(results["forces_std"], dtype=np.float64))
        ferr.append(np.linalg.norm(forces - np.asarray(ref_f, dtype=np.float64), axis=1))
        ref_e = get_label(atoms, "energy")
        if ref_e is not None:
            n = len(a)
            estd.append(results["energy_std"] / n)
            eerr.append(abs(results["energy"] - float(ref_e)) / n)
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0))
    return {"forces_std": cat(fstd), "force_error": cat(ferr), "energy_std_per_atom": np.asarray(estd),
            "energy_error_per_atom": np.asarray(eerr)}


def calibration(spread, error, bins: int = 10) -> dict:
    """Spearman ρ and Pearson r of ``error`` against ``spread``; ``bins`` equal-count bins of the spread, each with
    its RMS spread, RMS error and count (RMS: root of the mean square, the quantities a calibrated spread equals)."""
    from scipy.stats import pearsonr, spearmanr

    spread, error = np.asarray(spread, dtype=np.float64), np.asarray(error, dtype=np.float64)
    out = {"n": int(spread.size), "mean_spread": float(spread.mean()) if spread.size else float("nan"),
           "rmse": float(np.sqrt(np.mean(error**2))) if error.size else float("nan")}
    if spread.size < 3:
        return {**out, "spearman": float("nan"), "pearson": float("nan"), "bins": []}
    out["spearman"] = float(spearmanr(spread, error).statistic)
    out["pearson"] = float(pearsonr(spread, error).statistic)
    order = np.argsort(spread, kind="stable")
    out["bins"] = [{"rms_spread": float(np.sqrt(np.mean(spread[idx] ** 2))),
                    "rms_error": float(np.sqrt(np.mean(error[idx] ** 2))), "count": int(idx.size)}
                   for idx in np.array_split(order, min(bins, spread.size)) if idx.size]
    return out


def plot_calibration(sets: dict, path, title: str = "committee calibration (per-atom forces)") -> None:
    """Binned RMS force error against RMS force spread (eV/Å, log-log, with the diagonal) of several
    :func:`calibration` results, ``{label: result}``, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    lo, hi = np.inf, 0.0
    for label, res in sets.items():
        x = [b["rms_spread"] for b in res["bins"]]
        y = [b["rms_error"] for b in res["bins"]]
        if not x:
            continue
        ax.plot(x, y, "o-", label=f"{label} (ρ = {res['spearman']:.2f}, n = {res['n']})")
        lo, hi = min(lo, *x, *y), max(hi, *x, *y)
    if hi > 0:
        lo = max(lo, hi * 1e-4)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="calibrated (error = spread)")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("RMS per-atom force spread σ (eV/Å)")
    ax.set_ylabel("RMS per-atom force error |ΔF| (eV/Å)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


__all__ = ["calibration", "committee_errors", "plot_calibration"]
