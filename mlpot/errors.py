"""Error types of mlpot.

Every error carries a one-line message that names where the problem is: the file
and the frame (for data) or the file and the line (for model files).
"""

from __future__ import annotations


class MLPotError(Exception):
    """Base class of every error mlpot raises on purpose."""


def where(source: str | None = None, frame: int | None = None, line: int | None = None) -> str:
    """Format a location prefix such as ``train.xyz, frame 3: `` (empty if unknown)."""
    parts = []
    if source:
        parts.append(str(source))
    if frame is not None:
        parts.append(f"frame {frame}")
    if line is not None:
        parts.append(f"line {line}")
    return (", ".join(parts) + ": ") if parts else ""


class DataError(MLPotError, ValueError):
    """Bad input data (structures or labels)."""

    def __init__(self, message: str, source: str | None = None, frame: int | None = None):
        self.source, self.frame, self.detail = source, frame, message
        super().__init__(where(source, frame) + message)

    def located(self, source: str | None, frame: int | None) -> "DataError":
        """The same error naming another location (e.g. a source file and frame for a store index)."""
        return type(self)(self.detail, source, frame)


class DataPathError(DataError, FileNotFoundError):
    """A data path that does not exist."""


class EmptyFileError(DataError):
    """A data file that holds no frame, or a frame that holds no atom."""


class MissingLabelError(DataError):
    """A frame lacks a label (energy, forces, ...) that is required."""


class NonFiniteError(DataError):
    """NaN or inf in positions, cell or labels."""


class OverlappingAtomsError(DataError):
    """Two atoms closer than the minimum allowed distance."""


class DegenerateCellError(DataError):
    """A periodic structure whose cell has (near) zero volume."""


class UnknownElementError(DataError):
    """An element that the model (or the configured element list) does not know."""


class ModelFileError(MLPotError, ValueError):
    """A malformed model file (n2p2 files, exported models)."""

    def __init__(self, message: str, source: str | None = None, line: int | None = None):
        self.source, self.line = source, line
        super().__init__(where(source, line=line) + message)


class InputNNError(ModelFileError):
    """A malformed n2p2 ``input.nn``."""


class ScalingDataError(ModelFileError):
    """A malformed n2p2 ``scaling.data``."""


class WeightsFileError(ModelFileError):
    """A malformed n2p2 ``weights.NNN.data``."""


class ExportFormatError(MLPotError, ValueError):
    """A model that a foreign format cannot express (e.g. a non-ACSF descriptor for n2p2): names what is unsupported."""


class SimulationConfigError(MLPotError, ValueError):
    """A bad MD or property-evaluation setting (non-positive timestep or temperature, ...)."""


class OutputPathError(MLPotError, OSError):
    """An output folder (trajectory, report) that cannot be created or written."""


class MDInstabilityError(MLPotError, RuntimeError):
    """An MD run that exploded or collapsed (NaN, exploding energies, forces or temperature, atoms driven together,
    too many atoms outside the model's training range): names the step and the file of the last good frame."""


class ExtrapolationError(MDInstabilityError):
    """Too many atoms whose descriptors leave the training range of the model (an MD instability)."""


class ParameterRangeError(MLPotError, ValueError):
    """Parameters of an analytic potential (e.g. the PINN's bond-order potential) outside their physical range."""


class CheckpointError(MLPotError, ValueError):
    """A checkpoint (``ckpt_path``) or a model to start from (``init_from``) that cannot be used for this run."""

    def __init__(self, message: str, source: str | None = None):
        self.source = source
        super().__init__(where(source) + message)


class ConfigError(MLPotError, ValueError):
    """A configuration value of the wrong type or range (names its key)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")
