"""``mlpot-committee``: trained models as one committee ``model.pt`` (no science here; see
mlpot.models.committee and mlpot.export.save_committee)::

    mlpot-train -m seed=0,1,2,3                                        # four members (a Hydra multirun)
    mlpot-committee members=outputs/multirun/<date> out=committee.pt   # its */model.pt as one committee
    mlpot-committee members=[runs/a/model.pt,runs/b] out=committee.pt  # or named files / run folders

The members must share elements, cutoff, descriptor (class, settings) and dtype; they may differ in weights,
scaling statistics and head. ``mlpot-train committee.size=4`` trains and combines in one command.

Keys (conf/committee_app/committee.yaml): members, out.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlpot.cli import app, compose_args


def member_files(members) -> list[Path]:
    """The model files that ``members`` names: a list of files / run folders, or one folder whose subfolders
    hold ``model.pt`` (a multirun folder, in the order of its numbered subfolders)."""
    from mlpot.errors import ConfigError
    from mlpot.export import FILENAME

    if isinstance(members, (str, Path)):
        folder = Path(str(members))
        if folder.is_dir() and not (folder / FILENAME).is_file():
            subs = [p for p in folder.iterdir() if (p / FILENAME).is_file()]
            subs.sort(key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))
            if not subs:
                raise ConfigError("members", f"{folder} holds no */{FILENAME}")
            return [p / FILENAME for p in subs]
        members = [members]
    files = []
    for m in members:
        p = Path(str(m))
        files.append(p / FILENAME if p.is_dir() else p)
    return files


def combine(cfg) -> Path:
    from mlpot.errors import ConfigError
    from mlpot.export import save_committee

    if cfg.members is None:
        raise ConfigError("members", "is not set")
    files = member_files(cfg.members if isinstance(cfg.members, str) else list(cfg.members))
    if len(files) < 2:
        raise ConfigError("members", f"a committee needs at least 2 models, got {len(files)}")
    return save_committee(files, Path(str(cfg.out)))


def _main(argv=None) -> int:
    cfg = compose_args(argv, "committee_app", "committee", __doc__)
    if cfg is not None:
        print(combine(cfg))
    return 0


main = app("mlpot-committee")(_main)


if __name__ == "__main__":
    sys.exit(main())
