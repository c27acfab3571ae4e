"""Wall time of mlpot's jobs on an idle machine and beside one other CPU-bound process, for this version and a
previous one (torch's default threads, spinning OpenMP waits).

    python scripts/benchmark_threads.py --previous /path/to/old/checkout --out outputs/threads [--full]

Jobs (each a fresh process, built-in EMT Cu data generated beforehand and not timed):

* ``calculator``: 30 energy + force calls (timed inside the process) of ``MLPotCalculator`` on a rattled 256-atom fcc Cu cell (a model from
  a one-epoch training of each version); this version with ``threads="auto"``, the previous with torch's default;
* ``train5``: ``trainer.max_epochs=5`` on the built-in data;
* ``default`` (``--full``): the default run, ``mlpot-train`` (the previous version as ``python -m mlpot.train``;
  ``--full-previous`` runs it too).

The busy neighbour is ``python -c 'while True: pass'`` (one core at 100 %). The table gives both walls and their
ratio, with the load average at the start of each run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CALC = r"""
import sys, time, numpy as np
from ase.build import bulk
from mlpot.calculator import MLPotCalculator
try:
    calc = MLPotCalculator(sys.argv[1], threads="auto")
except TypeError:  # a version without the threads argument: torch's default
    calc = MLPotCalculator(sys.argv[1])
atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (4, 4, 4)
rng = np.random.default_rng(0)
t0 = time.perf_counter()
for k in range(30):
    a = atoms.copy(); a.positions += rng.normal(0, 0.05, a.positions.shape); a.calc = calc
    a.get_forces()
print("seconds", time.perf_counter() - t0)
"""


def run(cmd, cwd, env, log) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc:
        sys.exit(f"{' '.join(map(str, cmd))} failed (exit {rc}); see {log}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--previous", type=Path, help="checkout of the previous version")
    ap.add_argument("--out", type=Path, default=Path("outputs/threads"))
    ap.add_argument("--full", action="store_true", help="also the whole default run (minutes)")
    ap.add_argument("--full-previous", action="store_true", help="... for the previous version too (up to ~25 min)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    versions = {"this": ROOT}
    if args.previous:
        versions["previous"] = args.previous.resolve()
    rows = []
    for name, src in versions.items():
        work = (args.out / name).resolve()
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
        env.update(PYTHONPATH=str(src), PYTHONWARNINGS="ignore")
        train = ([shutil.which("mlpot-train") or "mlpot-train"] if name == "this"
                 else [sys.executable, "-m", "mlpot.train"])
        common = ["trainer.enable_progress_bar=false", f"data.cache_dir={work / 'cache'}"]
        # not timed: the built-in data and a model for the calculator
        run(train + ["trainer.max_epochs=1", f"hydra.run.dir={work / 'model'}", *common], work, env, work / "prep.log")
        jobs = [("calculator", [sys.executable, "-c", CALC, str(work / "model" / "model.pt")]),
                ("train5", train + ["trainer.max_epochs=5", "export=false", *common])]
        if args.full and (name == "this" or args.full_previous):
            jobs.append(("default", train + common))
        for job, cmd in jobs:
            walls = {}
            for state in ("idle", "busy"):
                busy = None
                if state == "busy":
                    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    time.sleep(3)
                load = os.getloadavg()[0]
                c = cmd if job == "calculator" else [*cmd, f"hydra.run.dir={work / f'{job}_{state}'}"]
                log = work / f"{job}_{state}.log"
                try:
                    seconds = run(c, work, env, log)
                    if job == "calculator":  # the calls alone, not the process start
                        seconds = float(next(ln.split()[1] for ln in log.read_text().splitlines()
                                             if ln.startswith("seconds ")))
                    walls[state] = (seconds, load)
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
                print(name, job, state, f"{walls[state][0]:.1f} s (load {load:.2f})", flush=True)
                time.sleep(5)
            rows.append((name, job, walls))
    print(f"\n{os.cpu_count()} cores; busy neighbour: one `python -c 'while True: pass'`\n")
    print("| version | job | idle s (load) | beside a busy process s (load) | ratio |")
    print("|---|---|---|---|---|")
    for name, job, w in rows:
        print(f"| {name} | {job} | {w['idle'][0]:.1f} ({w['idle'][1]:.2f}) | {w['busy'][0]:.1f} ({w['busy'][1]:.2f}) | "
              f"{w['busy'][0] / w['idle'][0]:.2f}x |")


if __name__ == "__main__":
    main()
