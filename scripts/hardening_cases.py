"""Mistakes and faults a new user meets, run against a version of mlpot, each judged as *clear*, *weak* or *bad*.

    python scripts/hardening_cases.py --out cases_new.json                        # this checkout
    python scripts/hardening_cases.py --src /path/to/old/checkout --out old.json  # another version (a worktree)
    python scripts/hardening_cases.py --table old.json cases_new.json             # the before/after table

Each case runs the apps as a user would (``python -m mlpot.train ...`` in a fresh folder, or a few lines of
Python for MD) with ``--src`` first on ``PYTHONPATH``. Judgement:

* an expected **error**: *clear* when the exit status is not 0, there is no traceback and the message names the
  expected token (file and frame, or key); *weak* without traceback but without the token; *bad* for a traceback
  wall or exit status 0 (a wrong model that looks right).
* an expected **warning**: *clear* when the run ends with status 0 and its log names the token; *bad* when the
  run is silent about it.
* an expected **success** with a property (history of the whole run, model written despite a failing plot, a
  summary): *clear* when it holds, *bad* when not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAIL = ["data.split.kind=tail"]  # one trajectory: the last frames (the odd one out) are the test split
QUICK = ["trainer.max_epochs=1", "data.batch_size=4", "descriptor.cutoff=4.0", "descriptor.angular.rc=3.5",
         "model.hidden=[6]", "trainer.enable_progress_bar=false"]

DATA = r"""
import sys, numpy as np, ase.io
from ase.build import bulk
from ase.calculators.emt import EMT
out, kind = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
def frame(symbol="Cu", rattle=0.05):
    a = bulk(symbol, "fcc", a=3.6, cubic=True)
    a.rattle(rattle, seed=int(rng.integers(1 << 30)))
    a.calc = EMT(); a.get_potential_energy(); a.get_forces(); a.get_stress()
    return a
frames = [frame() for _ in range(20)]
if kind == "unseen":        # an element only in the last (test) frames
    odd = frame(); odd[0].symbol = "Au"; odd.calc = EMT(); odd.get_potential_energy(); odd.get_forces()
    frames = frames + [odd]
elif kind == "absurd":      # one energy +1e6 eV
    frames[7].calc.results["energy"] += 1e6
elif kind == "duplicate":   # a training frame repeated in the test split
    frames = frames + [frames[3]]
elif kind in ("close", "overlap"):
    bad = frame(); bad.positions[1] = bad.positions[0] + [0.25 if kind == "close" else 0.05, 0, 0]
    bad.calc = EMT(); bad.get_potential_energy(); bad.get_forces()
    frames = frames + [bad]
elif kind == "ag":
    frames = [frame("Ag") for _ in range(20)]
ase.io.write(out, frames)
if kind == "truncated":     # a file cut in the middle of frame 12
    text = open(out).read(); lines = text.splitlines(True)
    open(out, "w").write("".join(lines[: 12 * 6 + 3]))
"""

MD = {
    "collapse": r"""
from ase.build import bulk
from ase.calculators.emt import EMT
from mlpot.md.runner import run_md
atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
atoms.positions[0] = atoms.positions[1] + [0.3, 0.0, 0.0]
run_md(atoms, EMT(), output_dir="md", ensemble="nve", steps=200, timestep_fs=5.0, progress=False,
       init_velocities=False, max_energy_change_per_atom=1e9, max_force=1e9)
""",
    "cut_restart": r"""
import ase.io
from ase.build import bulk
from ase.calculators.emt import EMT
from mlpot.md.runner import run_md
kw = dict(output_dir="md", ensemble="nve", timestep_fs=1.0, interval=5, progress=False, temperature_K=300.0)
run_md(bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2), EMT(), steps=20, **kw)
text = open("md/md.extxyz").read(); open("md/md.extxyz", "w").write(text[: len(text) - 500])
run_md(bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2), EMT(), steps=30, restart=True, **kw)
steps = [a.info["step"] for a in ase.io.read("md/md.extxyz", ":")]
assert steps == [0, 5, 10, 15, 20, 25, 30], f"resumed trajectory has steps {steps}"
print("resumed from step 15")
""",
    "one_atom": r"""
import numpy as np, ase.io
from ase import Atoms
from ase.calculators.emt import EMT
from mlpot.md.runner import run_md
atoms = Atoms("Cu", positions=[[0, 0, 0]], cell=np.eye(3) * 2.55, pbc=True)
out = run_md(atoms, EMT(), output_dir="md", ensemble="langevin", steps=10, timestep_fs=1.0, interval=5,
             progress=False, temperature_K=300.0)
assert np.isfinite(out["final_temperature_K"]), "temperature is NaN"
assert all(np.isfinite(a.positions).all() for a in ase.io.read("md/md.extxyz", ":")), "NaN positions"
print("finite")
""",
}


def case_list(trained: Path) -> list[dict]:
    """(class, name, setup data kind or None, argv or MD script, expectation, token)."""
    ck = trained / "checkpoints" / "last.ckpt"
    t = "mlpot.train"
    return [
        # data
        dict(cls="data", name="element only in the test split", data="unseen", args=TAIL, expect="error", token="frame 20"),
        dict(cls="data", name="one energy +1e6 eV", data="absurd", args=TAIL, expect="error", token="frame 7"),
        dict(cls="data", name="frame duplicated across splits", data="duplicate", args=TAIL, expect="warn", token="identical"),
        dict(cls="data", name="two atoms 0.25 Å apart", data="close", args=TAIL, expect="warn", token="0.25 Å"),
        dict(cls="data", name="two atoms 0.05 Å apart", data="overlap", args=TAIL, expect="error", token="frame 20"),
        dict(cls="data", name="data.keys.energy names no key", data="plain", args=["data.keys.energy=dft_energy"],
             expect="error", token="dft_energy"),
        dict(cls="data", name="data.keys.stress_unit=abc", data="plain", args=["data.keys.stress_unit=abc"], expect="error",
             token="stress_unit"),
        dict(cls="data", name="data file cut in a frame", data="truncated", args=[], expect="error", token="data.extxyz"),
        dict(cls="data", name="data path does not exist", data=None, args=["data=xyz", "data.path=/no/such.xyz"],
             expect="error", token="/no/such.xyz"),
        # config
        dict(cls="config", name="trainer.max_epochs=abc", data="plain", args=["trainer.max_epochs=abc"], expect="error",
             token="max_epochs"),
        dict(cls="config", name="descriptor=nope (no such option)", data="plain", args=["descriptor=nope"],
             expect="error", token="nope"),
        dict(cls="config", name="unknown key", data="plain", args=["no_such_key=1"], expect="error", token="no_such_key"),
        dict(cls="config", name="optim.lr=abc", data="plain", args=["optim.lr=abc"], expect="error",
             token="optim.lr"),
        # checkpoints and models
        dict(cls="checkpoint", name="ckpt_path=model.pt", data="plain", args=[f"ckpt_path={trained / 'model.pt'}"],
             expect="error", token="init_from"),
        dict(cls="checkpoint", name="ckpt_path to a 0-byte file", data="plain", args=["ckpt_path=empty.ckpt"],
             expect="error", token="empty.ckpt", prep="empty"),
        dict(cls="checkpoint", name="ckpt_path to a truncated file", data="plain", args=["ckpt_path=cut.ckpt"],
             expect="error", token="cut.ckpt", prep="cut"),
        dict(cls="checkpoint", name="Cu checkpoint resumed on Ag data", data="ag", args=[f"ckpt_path={ck}"],
             expect="error", token="elements"),
        dict(cls="checkpoint", name="checkpoint of another network", data="plain",
             args=[f"ckpt_path={ck}", "model.hidden=[5,5]"], expect="error", token="hidden"),
        dict(cls="checkpoint", name="fine-tune from model.pt (init_from)", data="plain",
             args=[f"init_from={trained / 'model.pt'}"], expect="ok", check="model"),
        # artefacts
        dict(cls="artefacts", name="plot fails (learning_curves.png unwritable)", data="plain", args=[], expect="ok",
             check="model", prep="plot_blocked"),
        dict(cls="artefacts", name="resume: history covers the whole run", data="plain", args=[], expect="ok",
             check="history", prep="resume"),
        # command line output
        dict(cls="output", name="summary, no \\r or tips in a log file", data="plain", args=[], expect="ok",
             check="clean"),
        # MD
        dict(cls="md", name="collapsing run (mlpot-md, the model, atoms 0.3 Å apart)", app="mlpot.md.app",
             args=["md/calculator=model", f"calculator.path={trained / 'model.pt'}", "md/structure=file",
                   "structure.path=start.extxyz", "md/ensemble=nve", "steps=200", "timestep_fs=5",
                   "init_velocities=false", "progress=false"], prep="collapse", expect="error", token="last_good"),
        dict(cls="md", name="the same with the extrapolation stop off", app="mlpot.md.app",
             args=["md/calculator=model", f"calculator.path={trained / 'model.pt'}", "md/structure=file",
                   "structure.path=start.extxyz", "md/ensemble=nve", "steps=200", "timestep_fs=5",
                   "init_velocities=false", "progress=false", "stop.max_extrapolating_fraction=null"], prep="collapse",
             expect="error", token="last_good"),
        dict(cls="md", name="restart from a cut trajectory", md="cut_restart", expect="ok", check="stdout:resumed"),
        dict(cls="md", name="one atom with velocities", md="one_atom", expect="ok", check="stdout:finite"),
    ]


def run_case(case: dict, src: Path, work: Path, data_cache: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    folder = Path(tempfile.mkdtemp(dir=work))
    run_dir = folder / "run"
    if case.get("app") == "mlpot.md.app":
        if case.get("prep") == "collapse":  # a crystal with two atoms driven together
            subprocess.run([sys.executable, "-c", "import ase.io; from ase.build import bulk; a = bulk('Cu', 'fcc', "
                            "a=3.6, cubic=True) * (2, 2, 2); a.positions[0] = a.positions[1] + [0.3, 0, 0]; "
                            "ase.io.write('start.extxyz', a)"], cwd=folder, env=env, check=True)
        argv = [sys.executable, "-m", "mlpot.md.app", *case["args"], f"hydra.run.dir={folder / 'md'}"]
    elif "md" in case:
        (folder / "md.py").write_text(case["md"] if "\n" in case["md"] else MD[case["md"]])
        argv = [sys.executable, "md.py"]
    else:
        args = list(case["args"])
        if case["data"]:
            path = folder / "data.extxyz"
            if case["data"] not in data_cache:
                tmp = work / f"data_{case['data']}.extxyz"
                subprocess.run([sys.executable, "-c", DATA, str(tmp), case["data"]], check=True, env=env)
                data_cache[case["data"]] = tmp
            shutil.copy(data_cache[case["data"]], path)
            args = ["data=xyz", f"data.path={path}", *args]
        prep = case.get("prep")
        if prep == "empty":
            (folder / "empty.ckpt").write_bytes(b"")
        elif prep == "cut":
            src_ck = Path(case["trained"]) / "checkpoints" / "last.ckpt"
            (folder / "cut.ckpt").write_bytes(src_ck.read_bytes()[:2000])
        elif prep == "plot_blocked":
            (run_dir / "learning_curves.png").mkdir(parents=True)
        argv = [sys.executable, "-m", "mlpot.train", *QUICK, f"hydra.run.dir={run_dir}",
                f"data.cache_dir={folder / 'cache'}", *args]  # the case's overrides last: they win
        if prep == "resume":
            first = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True)
            if first.returncode:
                return _judge(case, first, folder, 0.0)
            argv = [a if a != "trainer.max_epochs=1" else "trainer.max_epochs=3" for a in argv]
            argv.append(f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    t0 = time.perf_counter()
    res = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    return _judge(case, res, folder, time.perf_counter() - t0)


def _error_line(text: str, token: str = "") -> str:
    """The line that says what went wrong: the last naming the token, else the last naming an error."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    for picks in ([ln for ln in lines if token and token in ln], [ln for ln in lines if "error" in ln.lower()], lines):
        if picks:
            return picks[-1][:220]
    return ""


def _judge(case: dict, res, folder: Path, seconds: float) -> dict:
    out = res.stdout + res.stderr
    traceback = "Traceback (most recent call last)" in out
    line = _error_line(res.stderr, case.get("token", ""))
    n_lines = len([ln for ln in res.stderr.splitlines() if ln.strip()])
    expect, verdict, why = case["expect"], "bad", ""
    if expect == "error":
        if res.returncode == 0:
            why = "exit 0: the run went on"
        elif traceback:
            why = f"traceback ({n_lines} lines of stderr)"
        elif case["token"] in res.stderr:
            verdict = "clear"
        else:
            verdict, why = "weak", "does not name " + case["token"]
    elif expect == "warn":
        if res.returncode != 0:
            why = f"exit {res.returncode}" + (" with traceback" if traceback else "")
        elif case["token"] in out:
            verdict = "clear"
        else:
            why = "silent"
    else:
        check = case["check"]
        run_dir = folder / "run"
        if res.returncode != 0:
            why = f"exit {res.returncode}" + (f": traceback ({n_lines} lines)" if traceback else f": {line}")
        elif check == "model":
            note = _error_line(out, "plots not written") if "plots not written" in out else ""
            verdict, why = (("clear", f"model.pt written; {note}" if note else "model.pt written")
                            if (run_dir / "model.pt").exists() else ("bad", "no model.pt"))
        elif check == "history":
            hist = json.loads((run_dir / "history.json").read_text())
            verdict = "clear" if len(hist) == 3 else "bad"
            why = f"history.json has {len(hist)} of 3 epochs"
        elif check == "clean":
            problems = [p for p, bad in (("\\r", "\r" in out), ("Tip:", "Tip:" in out),
                                         ("no summary", "run folder:" not in res.stdout)) if bad]
            verdict, why = (("bad", ", ".join(problems)) if problems else
                            ("clear", "no \\r, no tips; ends with: " + " / ".join(res.stdout.strip().splitlines()[-3:])))
        elif check.startswith("stdout:"):
            verdict = "clear" if check[7:] in res.stdout else "bad"
            why = _error_line(out, "restarting") if "restarting" in out else res.stdout.strip()[-120:]
    if verdict == "clear" and expect == "error":
        why = line
    elif verdict == "clear" and expect == "warn":
        why = _error_line(out, case["token"])
    return {"class": case["cls"], "case": case["name"], "verdict": verdict, "exit": res.returncode,
            "traceback": traceback, "detail": why or line, "seconds": round(seconds, 1),
            "stderr_tail": res.stderr[-600:]}


def train_reference(src: Path, work: Path) -> Path:
    """A 2-epoch Cu model with a checkpoint (the checkpoint cases use it)."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    data = work / "ref.extxyz"
    subprocess.run([sys.executable, "-c", DATA, str(data), "plain"], check=True, env=env)
    ref = work / "ref"
    res = subprocess.run([sys.executable, "-m", "mlpot.train", "data=xyz", f"data.path={data}", *QUICK,
                          "trainer.max_epochs=2", f"hydra.run.dir={ref}", f"data.cache_dir={work / 'refcache'}"],
                         cwd=work, env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"the reference training failed:\n{res.stderr[-3000:]}")
    return ref


def table(before: list[dict], after: list[dict]) -> str:
    old = {r["case"]: r for r in before}
    rows = ["| class | case | before | after |", "|---|---|---|---|"]
    for r in after:
        b = old.get(r["case"])
        def fmt(x):
            if not x:
                return "-"
            detail = re.sub(r"/tmp/mlpot_cases_\w+/(tmp\w+/)?", "", x["detail"])
            detail = re.sub(r"\[[\d\- :,]+\]\[[\w.]+\]\[\w+\] - ", "", detail)  # log lines' prefixes
            return f"**{x['verdict']}**: {detail}".replace("|", "/")
        rows.append(f"| {r['class']} | {r['case']} | {fmt(b)} | {fmt(r)} |")
    count = lambda rs, v: sum(x["verdict"] == v for x in rs)  # noqa: E731
    rows.append("")
    rows.append(f"before: {count(before, 'clear')} clear, {count(before, 'weak')} weak, {count(before, 'bad')} bad; "
                f"after: {count(after, 'clear')} clear, {count(after, 'weak')} weak, {count(after, 'bad')} bad "
                f"(of {len(after)})")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=ROOT, help="checkout of the mlpot version to try")
    ap.add_argument("--out", type=Path, help="results (JSON)")
    ap.add_argument("--only", help="run only the cases whose name contains one of these (comma-separated)")
    ap.add_argument("--table", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="print the before/after table")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.table[0].read_text()), json.loads(args.table[1].read_text())))
        return
    work = Path(tempfile.mkdtemp(prefix="mlpot_cases_"))
    trained = train_reference(args.src.resolve(), work)
    results, cache = [], {}
    for case in case_list(trained):
        if args.only and not any(part in case["name"] for part in args.only.split(",")):
            continue
        case["trained"] = str(trained)
        r = run_case(case, args.src.resolve(), work, cache)
        print(f"{r['verdict']:6s} {r['class']:10s} {r['case']:45s} {r['detail'][:110]}", flush=True)
        results.append(r)
    if args.out:
        if args.only and args.out.exists():  # update those cases in an earlier result file
            names = {r["case"] for r in results}
            old = json.loads(args.out.read_text())
            results = [next(r for r in results if r["case"] == o["case"]) if o["case"] in names else o for o in old] + [
                r for r in results if r["case"] not in {o["case"] for o in old}]
        args.out.write_text(json.dumps(results, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
