"""The console scripts. Each sets up the process before torch is imported (OpenMP threads that wait passively
instead of spinning, so that an idle torch thread does not take a core that another process needs; a value the
user set is kept), then runs its app."""

from __future__ import annotations

import os


def _process_setup() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def train():
    _process_setup()
    from mlpot.train import main

    return main()


def md():
    _process_setup()
    from mlpot.md.app import main

    return main()


def evaluate():
    _process_setup()
    from mlpot.evaluate.app import main

    return main()


def prepare():
    _process_setup()
    from mlpot.prepare import main

    raise SystemExit(main())
