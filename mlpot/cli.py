"""What the command-line apps (``mlpot-train``, ``mlpot-md``, ``mlpot-evaluate``, ``mlpot-prepare``) share: one line
per user error instead of a traceback, quiet third-party output, the process set-up.

* :func:`app` wraps an app's task function: an error prints ``mlpot-train: error: <one line naming the file, frame
  or key>`` on stderr and exits with status 2; ``HYDRA_FULL_ERROR=1`` (Hydra's own switch) re-raises it with
  its traceback. Errors from ``hydra.utils.instantiate`` are unwrapped to the one that caused them, with the
  config key they came from.
* :data:`CONF_DIR`: the one config root of the apps (``mlpot/conf``): ``train.yaml``, ``md.yaml``, ``evaluate.yaml``
  and their groups (the training's at the top, ``md/...`` and ``evaluate/...`` for the others); each app's
  ``--help`` lists its own groups through the ``${mlpot.groups:APP}`` resolver (:func:`config_groups`).
* :func:`rename_overrides` keeps an app's old command-line spellings working (``mlpot-evaluate model=...``).
* :func:`quiet` drops third-party advertising ("Tip: ... try installing ...") and known deprecation noise of
  Lightning on this torch from the normal output; nothing of mlpot's own is filtered.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import warnings
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = str(Path(__file__).resolve().parent / "conf")  # shipped in the package; conf/ at the top is a link to it
#: the config groups of the apps other than mlpot-train, by app (folders of CONF_DIR)
APP_GROUPS = {"md": "md", "evaluate": "evaluate"}
#: folders of CONF_DIR that are no app's groups of mlpot-train (deploy and committee_app are roots of their own, hydra is
#: Hydra's)
NOT_TRAIN = ("md", "evaluate", "deploy", "committee_app", "hydra")


def config_groups(app_name: str) -> str:
    """The config groups of one app and their options, one ``group: a, b, c`` line each (for ``--help``):
    ``train``: the top-level groups of :data:`CONF_DIR`; ``md`` / ``evaluate``: the groups under ``md/`` /
    ``evaluate/``; the ``hydra/sweeper`` presets shipped with mlpot are listed for ``train``."""
    root = Path(CONF_DIR)
    if app_name == "train":
        dirs = [d for d in root.iterdir() if d.is_dir() and d.name not in NOT_TRAIN]
        dirs += [d for d in (root / "hydra").glob("*") if d.is_dir()]
    elif app_name in APP_GROUPS:
        dirs = [d for d in (root / APP_GROUPS[app_name]).rglob("*") if d.is_dir() and list(d.glob("*.yaml"))]
    else:  # an app whose config has no groups (all its keys are in $CONFIG)
        return "(none)"
    lines = []
    for d in sorted(dirs):
        options = sorted(f.stem for f in d.glob("*.yaml"))
        if options:
            lines.append(f"{d.relative_to(root).as_posix()}: {', '.join(options)}")
    return "\n".join(lines)


if not OmegaConf.has_resolver("mlpot.groups"):
    OmegaConf.register_new_resolver("mlpot.groups", config_groups)


def rename_overrides(argv: list[str], renames: dict[str, str]) -> list[str]:
    """Command-line overrides with old key or group names replaced (``{"model": "potential"}`` turns
    ``model=x.pt`` into ``potential=x.pt``, ``model.dtype=...`` into ``potential.dtype=...``); a new name with a
    ``/`` is a config group: only its choice is renamed (``suite=quick`` -> ``evaluate/suite=quick``), while
    ``suite.eos.n_points=5`` stays (the group's package). Hydra's own flags (``-m``, ``--cfg``, ...) pass as
    they are."""
    out = []
    for arg in argv:
        m = re.match(r"^([+~]{0,2})([A-Za-z_][\w/]*)(\.|=|@)(.*)$", arg, flags=re.S)
        if m and not arg.startswith("-") and m.group(2) in renames and not (
                "/" in renames[m.group(2)] and m.group(3) == "."):
            arg = f"{m.group(1)}{renames[m.group(2)]}{m.group(3)}{m.group(4)}"
        out.append(arg)
    return out

#: warnings of third-party packages that say nothing to a user of mlpot (message regexes)
NOISE = (
    r"isinstance\(treespec, LeafSpec\)",  # Lightning's pytree helper on torch >= 2.10
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"`torch.jit.script` is deprecated",
    r"Checkpoint directory .* exists and is not empty",
    r"The dirpath has changed from",
)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def quiet() -> None:
    """Silence third-party advertising and deprecation noise (see the module doc)."""
    for pattern in NOISE:  # warnings match the message from its start
        warnings.filterwarnings("ignore", message=".*" + pattern)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                 "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())


def root_cause(exc: BaseException) -> tuple[BaseException, str | None]:
    """The exception behind Hydra's ``InstantiationException`` wrappers, and the config key it names."""
    key = None
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__ == "InstantiationException":
            m = re.search(r"full_key: (\S+)", str(exc))
            key = key or (m.group(1) if m else None)
            nxt = exc.__cause__ or exc.__context__
            if nxt is None:
                break
            exc = nxt
            continue
        break
    return exc, key


def compose_args(argv, root: str, name: str, doc: str):
    """The config of a small app without Hydra's runtime (``mlpot-deploy``, ``mlpot-committee``): ``conf/<root>/<name>.yaml``
    with the command line's overrides (``argv``: None for ``sys.argv[1:]``), or None after printing ``doc`` for
    ``-h``/``--help``."""
    from hydra import compose, initialize_config_dir

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(doc)
        return None
    with initialize_config_dir(config_dir=str(Path(CONF_DIR) / root), version_base="1.3"):
        return compose(name, overrides=args)


def instantiate_config(conf, key: str):
    """``hydra.utils.instantiate(conf, _convert_="all")`` whose failure is one error: mlpot's own errors as they
    are, anything else a :class:`~mlpot.errors.SimulationConfigError` naming ``key`` and the ``_target_``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from mlpot.errors import MLPotError, SimulationConfigError

    try:
        return instantiate(conf, _convert_="all")
    except InstantiationException as exc:
        cause, _ = root_cause(exc)
        if isinstance(cause, MLPotError):
            raise cause from None
        raise SimulationConfigError(f"{key} ({conf['_target_']}): {' '.join(str(cause).split())}") from None


def one_line(exc: BaseException) -> str:
    """A one-line message for ``exc`` (mlpot's errors already name their file and frame or key)."""
    from mlpot.errors import MLPotError

    cause, key = root_cause(exc)
    text = " ".join(str(cause).split()) or type(cause).__name__
    if not isinstance(cause, MLPotError) and type(cause).__name__ not in ("ConfigError",):
        text = f"{type(cause).__name__}: {text}"
    if key and key not in text:
        text = f"{key}: {text}"
    return text


def app(name: str):
    """Decorator for an app's task function (see the module doc)."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            quiet()
            try:
                return fn(*args, **kwargs)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"{name}: error: {one_line(exc)}", file=sys.stderr)
                print(f"{name}: (HYDRA_FULL_ERROR=1 shows the traceback)", file=sys.stderr)
                raise SystemExit(2) from None

        return inner

    return wrap


__all__ = ["app", "quiet", "one_line", "root_cause", "instantiate_config", "compose_args", "NOISE", "CONF_DIR", "config_groups", "rename_overrides"]


def _defaults_of(path) -> dict:
    """A config file's own values, merged over the files its ``defaults`` list names in the same group (one level,
    as conf/trainer/gpu.yaml over cpu.yaml)."""
    from pathlib import Path

    from omegaconf import OmegaConf

    path = Path(path)
    own = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    merged: dict = {}
    for item in own.pop("defaults", []) or []:
        if isinstance(item, str) and item != "_self_" and (path.parent / f"{item}.yaml").exists():
            merged.update(_defaults_of(path.parent / f"{item}.yaml"))
    merged.update(own)
    return merged


def _leaves(d, prefix=""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _leaves(v, key + ".")
        else:
            yield key, v


def check_types(cfg, conf_dir, config_name: str, choices: dict) -> None:
    """Raise ``ConfigError`` for a value whose config file default is a number or a boolean but which is a string
    that is neither (``trainer.max_epochs=abc``), before any data is read. The defaults are those of the root
    config file and of the chosen file of every config group."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from mlpot.errors import ConfigError

    conf_dir = Path(conf_dir)
    sources = [("", conf_dir / f"{config_name}.yaml")]
    for group, choice in (choices or {}).items():
        if choice and not str(group).startswith("hydra") and group != "experiment":
            f = conf_dir / group / f"{choice}.yaml"
            if f.exists() and "@package" not in f.read_text().split("\n", 1)[0]:
                sources.append((group.replace("/", ".") + ".", f))
    for prefix, path in sources:
        for key, default in _leaves(_defaults_of(path), prefix):
            if isinstance(default, str) or default is None or key.startswith("hydra."):
                continue
            value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
            if not isinstance(value, str):
                continue
            kind = "true or false" if isinstance(default, bool) else "an integer" if isinstance(default, int) else "a number"
            ok = value.lower() in ("true", "false") if isinstance(default, bool) else _parses(value, type(default))
            if not ok:
                raise ConfigError(key, f"must be {kind} (the default is {default!r}), got {value!r}")


def _parses(text: str, kind) -> bool:
    try:
        kind(text)
        return True
    except (TypeError, ValueError):
        return False
