"""Optimisers against each other (issue 7): test error against training wall time, same time budget each.

    .venv/bin/python scripts/compare_optimizers.py --data ../shared/data/mlearn/Mo --out outputs/optimizers_mo \\
        --budget 300 --reference "n2p2:223:0.126:4.66" \\
        --runs "adamw:optim=adamw data.batch_size=8" "ekf:optim=ekf data.batch_size=1" "lbfgs:optim=lbfgs"
    .venv/bin/python scripts/compare_optimizers.py --out outputs/optimizers_mo --plot-only    # table + plot again

Each run (``label:overrides``) is ``python -m mlpot.train`` in its own process, one after the other, in
``<out>/runs/<label>`` with ``experiment=<--experiment> data.path=<--data>``, a wall-time budget
(``trainer.max_time``, the same for every optimiser; ``trainer.max_epochs=-1`` so the budget decides),
early stopping off (``--early-stopping`` keeps the preset's), and the test-curve callback
(``mlpot.training.curves.TestCurve``: test errors every ``--every`` epochs in ``test_curve.csv``; its
evaluations count neither in the curve's wall time nor against the budget). Then ``--common`` overrides, then
the run's own (later ones win). The descriptor cache is built before training starts and is not in the
budget or the curve's time; ``process s`` in the table is the whole process (reading, cache, training,
final test, export).

Writes ``<out>/optimizers.png`` (test force and energy-per-atom error against training wall time, log y,
one line per run; ``--reference label:seconds:force[:energy_meV_per_atom]`` adds a point and a dashed line,
in the metric of ``--metric``, e.g. n2p2's own Kalman training), ``<out>/optimizers.md`` (the table and the
command), ``<out>/runs.json`` (each run's command, return code, process seconds, load average) and prints the
table. The ``model.pt`` columns are the test errors of the exported model (best validation checkpoint,
``metrics.json``); the others are read from the curve.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlpot.training.curves import read_curve  # noqa: E402

CALLBACK = "mlpot.training.curves.TestCurve"


# -- command line pieces ----------------------------------------------------------------------------------
def parse_run(spec: str) -> tuple[str, list[str]]:
    """``"label:override override ..."`` -> (label, overrides)."""
    label, sep, rest = spec.partition(":")
    label = label.strip()
    if not sep or not label or not all(c.isalnum() or c in "-_." for c in label):
        raise ValueError(f"run {spec!r}: expected 'label:overrides' with a label of letters, digits, '-', '_', '.'")
    return label, shlex.split(rest)


def parse_reference(spec: str) -> dict:
    """``"label:seconds:force[:energy]"`` (force in eV/Å, energy in meV/atom) -> dict."""
    parts = spec.split(":")
    if len(parts) not in (3, 4):
        raise ValueError(f"reference {spec!r}: expected 'label:seconds:force[:energy_meV_per_atom]'")
    ref = {"label": parts[0], "seconds": float(parts[1]), "forces": float(parts[2])}
    if len(parts) == 4:
        ref["energy"] = float(parts[3])
    return ref


def duration(seconds: float) -> str:
    """Seconds -> Lightning's ``DD:HH:MM:SS`` (whole seconds, at least 1)."""
    s = max(1, int(round(seconds)))
    return f"{s // 86400:02d}:{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def build_command(python: str, run_dir: Path, data: str | None, experiment: str | None, budget: float | None,
                  every: int, common: list[str], overrides: list[str], early_stopping: bool = False) -> list[str]:
    """``python -m mlpot.train`` with the comparison's overrides (later ones win)."""
    cmd = [python, "-m", "mlpot.train"]
    if experiment:
        cmd.append(f"experiment={experiment}")
    if data:
        cmd.append(f"data.path={Path(data).resolve()}")
    cmd += [f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false"]
    if budget:
        cmd += ["trainer.max_epochs=-1", f"trainer.max_time={duration(budget)}"]
    if not early_stopping:
        cmd.append("~callbacks.early_stopping")
    cmd += [f"++callbacks.test_curve._target_={CALLBACK}", f"++callbacks.test_curve.every_n_epochs={every}"]
    return cmd + list(common) + list(overrides)


def stale_optim_keys(overrides: list[str]) -> list[str]:
    """``~optim.<part>.<key>`` deletions for keys that the chosen optimiser (or module) does not take.

    A preset written for one optimiser (e.g. experiment=mlearn's ``optim.optimizer.max_iter`` for L-BFGS)
    leaves its keys in the config when a run picks another one (``optim=adamw``), whose constructor then
    rejects them. The config is composed here (no data is read) to find such keys."""
    import inspect

    from hydra import compose, initialize_config_dir
    from hydra.utils import get_object

    from mlpot.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[o for o in overrides if not o.startswith("hydra.")])
    drops = []
    for part in ("optimizer", "module"):
        node = cfg.optim.get(part)
        if not node or "_target_" not in node:
            continue
        params = inspect.signature(get_object(node["_target_"])).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        drops += [f"~optim.{part}.{k}" for k in node if not str(k).startswith("_") and k not in params]
    return drops


# -- reading and summarising --------------------------------------------------------------------------------
def load_curves(runs_dir: Path, labels: list[str] | None = None) -> dict[str, list[dict]]:
    """``{label: rows of <runs_dir>/<label>/test_curve.csv}`` (runs without a curve are left out)."""
    runs_dir = Path(runs_dir)
    if labels is None:
        labels = sorted(p.name for p in runs_dir.iterdir() if (p / "test_curve.csv").exists()) if runs_dir.is_dir() else []
    out = {}
    for label in labels:
        path = runs_dir / label / "test_curve.csv"
        if path.exists():
            rows = read_curve(path)
            if rows:
                out[label] = rows
    return out


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def summarize(curves: dict[str, list[dict]], metric: str = "mae", references: list[dict] | None = None,
              model_metrics: dict[str, dict] | None = None, process_seconds: dict[str, float] | None = None) -> list[dict]:
    """One dict per run: epochs, training seconds, best force error and when, final errors (meV/atom, eV/Å),
    the first time a reference's figures are reached, and the exported model's test errors when given."""
    fkey, ekey = f"forces_{metric}", f"energy_per_atom_{metric}"
    ref = (references or [None])[0]
    rows = []
    for label, curve in curves.items():
        last = curve[-1]
        scored = [r for r in curve if _finite(r.get(fkey))]
        best = min(scored, key=lambda r: r[fkey]) if scored else None
        row = {
            "label": label, "epochs": last["epoch"], "train_seconds": last["wall_seconds"],
            "best_forces": best[fkey] if best else float("nan"),
            "best_seconds": best["wall_seconds"] if best else float("nan"),
            "best_epoch": best["epoch"] if best else None,
            "energy_mae": 1000 * last.get("energy_per_atom_mae", float("nan")),
            "energy_rmse": 1000 * last.get("energy_per_atom_rmse", float("nan")),
            "forces_mae": last.get("forces_mae", float("nan")), "forces_rmse": last.get("forces_rmse", float("nan")),
        }
        if ref is not None:
            hit = [r for r in curve if _finite(r.get(fkey)) and r[fkey] <= ref["forces"]
                   and ("energy" not in ref or (_finite(r.get(ekey)) and 1000 * r[ekey] <= ref["energy"]))]
            row["reach_seconds"] = hit[0]["wall_seconds"] if hit else None
        m = (model_metrics or {}).get(label)
        if m:
            row["model_energy_mae"] = 1000 * m.get("test/energy_per_atom_mae", float("nan"))
            row["model_forces_mae"] = m.get("test/forces_mae", float("nan"))
        if process_seconds and label in process_seconds:
            row["process_seconds"] = process_seconds[label]
        rows.append(row)
    return rows


def _f(x, fmt: str) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def markdown_table(summary: list[dict], metric: str = "mae", references: list[dict] | None = None) -> str:
    """The comparison as a markdown table (energies in meV/atom, forces in eV/Å, times in s)."""
    ref = (references or [None])[0]
    M = metric.upper()
    head = ["optimiser", "epochs", "train s", f"best F {M}", "at s"]
    if ref is not None:
        what = f"F {M} ≤ {ref['forces']:g}" + (f", E {M} ≤ {ref['energy']:g}" if "energy" in ref else "")
        head.append(f"reaches {ref['label']} ({what}) at s")
    head += ["final E MAE", "final E RMSE", "final F MAE", "final F RMSE"]
    with_model = any("model_forces_mae" in r for r in summary)
    with_process = any("process_seconds" in r for r in summary)
    if with_model:
        head += ["model.pt E MAE", "model.pt F MAE"]
    if with_process:
        head.append("process s")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in summary:
        cells = [r["label"], str(r["epochs"]), _f(r["train_seconds"], ".1f"), _f(r["best_forces"], ".4f"),
                 _f(r["best_seconds"], ".1f")]
        if ref is not None:
            cells.append(_f(r.get("reach_seconds"), ".1f") if r.get("reach_seconds") is not None else "not reached")
        cells += [_f(r["energy_mae"], ".2f"), _f(r["energy_rmse"], ".2f"), _f(r["forces_mae"], ".4f"),
                  _f(r["forces_rmse"], ".4f")]
        if with_model:
            cells += [_f(r.get("model_energy_mae"), ".2f"), _f(r.get("model_forces_mae"), ".4f")]
        if with_process:
            cells.append(_f(r.get("process_seconds"), ".1f"))
        lines.append("| " + " | ".join(cells) + " |")
    for other in references or []:
        cells = [f"{other['label']} (reference)", "–", _f(other["seconds"], ".1f"), _f(other["forces"], ".4f"), "–"]
        if ref is not None:
            cells.append("–")
        e, f = _f(other.get("energy"), ".2f"), _f(other["forces"], ".4f")
        cells += [e, "–", f, "–"] if metric == "mae" else ["–", e, "–", f]
        if with_model:
            cells += ["–", "–"]
        if with_process:
            cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    units = "Energies in meV/atom, forces in eV/Å, times in s of training (test evaluations excluded)."
    return "\n".join(lines) + "\n\n" + units + "\n"


def plot_curves(curves: dict[str, list[dict]], path, metric: str = "mae", references: list[dict] | None = None) -> Path:
    """Test force (left) and energy-per-atom (right, meV/atom) error against training wall time, log y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    M = metric.upper()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = ((axes[0], f"forces_{metric}", 1.0, f"test force {M} (eV/Å)", "forces"),
              (axes[1], f"energy_per_atom_{metric}", 1000.0, f"test energy {M} (meV/atom)", "energy"))
    for ax, key, scale, ylabel, refkey in panels:
        for label, curve in curves.items():
            pts = [(r["wall_seconds"], scale * r[key]) for r in curve if _finite(r.get(key)) and r[key] > 0]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, "-o", ms=2.5, lw=1.2, label=label)
        for ref in references or []:
            if refkey in ref:
                line = ax.axhline(ref[refkey], ls="--", lw=0.9, color="k", alpha=0.6)
                ax.plot([ref["seconds"]], [ref[refkey]], "*", ms=11, color=line.get_color(),
                        label=f"{ref['label']} ({ref['seconds']:g} s)")
        ax.set_yscale("log")
        ax.set_xlabel("training wall time (s)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def report(out: Path, metric: str = "mae", references: list[dict] | None = None, labels: list[str] | None = None,
           command: str | None = None) -> str:
    """Read ``<out>/runs/*/test_curve.csv`` (and metrics.json, runs.json), write optimizers.png and
    optimizers.md; return the table."""
    out = Path(out)
    curves = load_curves(out / "runs", labels)
    if not curves:
        raise SystemExit(f"no test_curve.csv under {out / 'runs'}")
    model_metrics = {}
    for label in curves:
        p = out / "runs" / label / "metrics.json"
        if p.exists():
            model_metrics[label] = json.loads(p.read_text())
    runs_json = out / "runs.json"
    info = json.loads(runs_json.read_text()) if runs_json.exists() else {}
    process = {k: v["process_seconds"] for k, v in info.items() if isinstance(v, dict) and "process_seconds" in v}
    table = markdown_table(summarize(curves, metric, references, model_metrics, process), metric, references)
    plot_curves(curves, out / "optimizers.png", metric, references)
    text = "# Optimisers: test error against training wall time\n\n" + table
    if command:
        text += f"\nCommand:\n\n```bash\n{command}\n```\n"
    per_run = [f"- {k}: `{' '.join(shlex.quote(c) for c in v['command'])}`"
               + (f" (OMP_NUM_THREADS={v['OMP_NUM_THREADS']})" if v.get("OMP_NUM_THREADS") else "")
               for k, v in info.items() if isinstance(v, dict) and "command" in v]
    if per_run:
        text += "\nRuns:\n\n" + "\n".join(per_run) + "\n"
    (out / "optimizers.md").write_text(text)
    return table


# -- main -------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="data set (data.path), e.g. ../shared/data/mlearn/Mo")
    ap.add_argument("--out", default="outputs/optimizers", help="output folder (runs under <out>/runs/<label>)")
    ap.add_argument("--runs", nargs="+", default=[], metavar="LABEL:OVERRIDES",
                    help='e.g. "adamw:optim=adamw data.batch_size=8" "ekf:optim=ekf data.batch_size=1"')
    ap.add_argument("--budget", type=float, default=300.0, help="training wall time per run in s (trainer.max_time); 0: none")
    ap.add_argument("--experiment", default="mlearn", help="preset for every run ('' for none)")
    ap.add_argument("--common", default="", help="overrides for every run, before each run's own")
    ap.add_argument("--every", type=int, default=1, help="test evaluation every N epochs")
    ap.add_argument("--early-stopping", action="store_true", help="keep the preset's early stopping")
    ap.add_argument("--metric", choices=("mae", "rmse"), default="mae", help="error plotted and used for 'best'")
    ap.add_argument("--reference", action="append", default=[], metavar="LABEL:S:FORCE[:ENERGY]",
                    help="a reference point, force in eV/Å, energy in meV/atom, e.g. n2p2:223:0.126:4.66")
    ap.add_argument("--plot-only", action="store_true", help="no training: table and plot from existing runs")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the runs")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    references = [parse_reference(r) for r in args.reference]
    runs = [parse_run(r) for r in args.runs]
    if len({label for label, _ in runs}) != len(runs):
        ap.error("run labels must be different")
    if not args.plot_only:
        if not runs:
            ap.error("--runs is required (or --plot-only)")
        if not args.data:
            ap.error("--data is required (or --plot-only)")
        out.mkdir(parents=True, exist_ok=True)
        runs_json = out / "runs.json"
        info = json.loads(runs_json.read_text()) if runs_json.exists() else {}
        common = shlex.split(args.common)
        for label, overrides in runs:
            run_dir = out / "runs" / label
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "test_curve.csv").unlink(missing_ok=True)
            cmd = build_command(args.python, run_dir, args.data, args.experiment, args.budget, args.every, common,
                                overrides, args.early_stopping)
            drops = stale_optim_keys(cmd[3:])
            if drops:
                print(f"[{label}] dropping keys the chosen optimiser does not take: {' '.join(drops)}", flush=True)
                cmd += drops
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            print(f"[{label}] {' '.join(shlex.quote(c) for c in cmd)}  (load {load})", flush=True)
            t0 = time.perf_counter()
            with open(run_dir / "train.log", "w") as log:
                rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            seconds = time.perf_counter() - t0
            print(f"[{label}] exit {rc} after {seconds:.1f} s (log: {run_dir / 'train.log'})", flush=True)
            info[label] = {"command": cmd, "returncode": rc, "process_seconds": seconds, "loadavg_before": load,
                           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
            runs_json.write_text(json.dumps(info, indent=1))
    command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *(sys.argv[1:] if argv is None else argv)])
    # every run of the folder: a rerun of some labels keeps the others in the table and the plot
    table = report(out, args.metric, references, None, command)
    print(table)
    print(f"wrote {out / 'optimizers.png'} and {out / 'optimizers.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
