"""Import of n2p2 potentials (``input.nn``, ``scaling.data``, ``weights.NNN.data``) and of
n2p2's ``input.data`` structures; export of ACSF + HDNNP potentials to n2p2's files (:func:`write`, the reverse of
:func:`load`: Å and eV, no normalisation, per-element offsets as ``atom_energy``).

Units: the caller gives the size of the files' length and energy units in Å and
eV (``length_unit``, ``energy_unit``); n2p2's own normalisation (``mean_energy``,
``conv_energy``, ``conv_length``) is undone on top. Symmetry-function values are
dimensionless, so their parameters are converted to Å and the network and
``scaling.data`` are used as they are; the network output becomes eV through
the head's per-element ``energy_scale`` and ``e0``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers

from mlpot.descriptors.acsf import ACSF, SymmetryFunction
from mlpot.descriptors.cutoff import N2P2_CUTOFF_TYPES
from mlpot.descriptors.scaling import FeatureScaler, affine_from_stats
from mlpot.errors import ExportFormatError, InputNNError, ScalingDataError, WeightsFileError
from mlpot.files import write_text
from mlpot.models.hdnnp import HDNNP
from mlpot.models.potential import Potential
# n2p2's files in one place for users
from mlpot.io.n2p2_data import iter_input_data, read_input_data, write_input_data  # noqa: F401
from mlpot.units import BOHR

# n2p2 activation letters -> mlpot activation names
ACTIVATION_LETTERS = {
    "l": "linear", "t": "tanh", "s": "logistic", "p": "softplus", "r": "relu", "g": "gaussian", "c": "cos",
    "S": "one_minus_logistic", "e": "exp_minus", "h": "square",
}
SCALING_KEYWORDS = ("scale_symmetry_functions", "center_symmetry_functions", "scale_symmetry_functions_sigma")
UNSUPPORTED = ("normalize_nodes", "element_nodes_short", "element_activation_short", "element_hidden_layers_short")


def _float(tok: str, exc, path, line):
    try:
        value = float(tok.replace("D", "E").replace("d", "e"))
    except ValueError:
        raise exc(f"'{tok}' is not a number", path, line) from None
    if not np.isfinite(value):
        raise exc(f"'{tok}' is not a finite number", path, line)
    return value


def _lines(path: Path, exc):
    if not path.is_file():
        raise exc("file not found", str(path))
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise exc("not a text file", str(path)) from None
    out = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append((n, line.split()))
    return out


def read_input_nn(path) -> dict:
    """Parse ``input.nn`` into settings and raw symmetry-function specs (in file units)."""
    path = Path(path)
    src = str(path)
    settings: dict = {"atom_energy": {}, "symfunctions": [], "scaling": set()}
    for n, tok in _lines(path, InputNNError):
        key, args = tok[0], tok[1:]
        if key in ("symfunction_short", "symfunction"):
            settings["symfunctions"].append((n, args))
        elif key == "elements":
            settings["elements"] = args
        elif key == "number_of_elements":
            settings["number_of_elements"] = int(_float(args[0], InputNNError, src, n)) if args else None
        elif key == "atom_energy":
            if len(args) < 2:
                raise InputNNError("atom_energy needs an element and a value", src, n)
            settings["atom_energy"][args[0]] = _float(args[1], InputNNError, src, n)
        elif key == "cutoff_type":
            if not args:
                raise InputNNError("cutoff_type needs a value", src, n)
            kind = int(_float(args[0], InputNNError, src, n))
            if kind not in N2P2_CUTOFF_TYPES:
                raise InputNNError(f"unknown cutoff_type {kind}", src, n)
            settings["cutoff_type"] = N2P2_CUTOFF_TYPES[kind]
            settings["cutoff_alpha"] = _float(args[1], InputNNError, src, n) if len(args) > 1 else 0.0
        elif key in SCALING_KEYWORDS:
            settings["scaling"].add(key)
        elif key in ("scale_min_short", "scale_max_short", "mean_energy", "conv_energy", "conv_length"):
            if not args:
                raise InputNNError(f"{key} needs a value", src, n)
            settings[key] = _float(args[0], InputNNError, src, n)
        elif key == "global_hidden_layers_short":
            if not args:
                raise InputNNError(f"{key} needs a value", src, n)
            settings[key] = int(_float(args[0], InputNNError, src, n))
        elif key == "global_nodes_short":
            settings[key] = [int(_float(a, InputNNError, src, n)) for a in args]
        elif key == "global_activation_short":
            settings[key] = (args, n)
        elif key in UNSUPPORTED:
            raise InputNNError(f"keyword '{key}' is not supported by the importer", src, n)
    for req in ("elements", "global_nodes_short", "global_activation_short", "cutoff_type"):
        if req not in settings:
            raise InputNNError(f"required keyword '{req}' missing", src)
    for el in settings["elements"]:
        if el not in atomic_numbers:
            raise InputNNError(f"unknown element '{el}' in 'elements'", src)
    if settings.get("number_of_elements") not in (None, len(settings["elements"])):
        raise InputNNError("number_of_elements does not match the 'elements' line", src)
    nh = settings.get("global_hidden_layers_short", len(settings["global_nodes_short"]))
    acts, n_act = settings["global_activation_short"]
    if len(settings["global_nodes_short"]) != nh or len(acts) != nh + 1:
        raise InputNNError("hidden layers, nodes and activations do not agree", src, n_act)
    for a in acts:
        if a not in ACTIVATION_LETTERS:
            raise InputNNError(f"activation '{a}' is not supported", src, n_act)
    if acts[-1] != "l":
        raise InputNNError("output activation must be linear ('l')", src, n_act)
    if not settings["symfunctions"]:
        raise InputNNError("no symmetry functions", src)
    return settings


def _symmetry_functions(settings, path, length_unit) -> list[tuple[int, SymmetryFunction]]:
    """SymmetryFunction objects in Å, each with the input.nn line it came from."""
    elements = settings["elements"]
    kind, alpha = settings["cutoff_type"], settings["cutoff_alpha"]
    out = []
    for n, args in settings["symfunctions"]:
        if len(args) < 2:
            raise InputNNError("symmetry function line too short", path, n)
        central, t = args[0], args[1]
        try:
            t = int(t)
        except ValueError:
            raise InputNNError(f"symmetry function type '{t}' is not an integer", path, n) from None
        try:
            if t == 2:
                if len(args) != 6:
                    raise InputNNError("type 2 needs: element 2 neighbour eta rs rc", path, n)
                nb = (args[2],)
                eta, rs, rc = (_float(a, InputNNError, path, n) for a in args[3:6])
                zeta = lam = 1.0
            elif t in (3, 9):
                if len(args) not in (8, 9):
                    raise InputNNError(f"type {t} needs: element {t} neighbour neighbour eta lambda zeta rc [rs]", path, n)
                nb = (args[2], args[3])
                eta, lam, zeta, rc = (_float(a, InputNNError, path, n) for a in args[4:8])
                rs = _float(args[8], InputNNError, path, n) if len(args) == 9 else 0.0
            else:
                raise InputNNError(f"symmetry function type {t} is not supported (2, 3, 9)", path, n)
            for e in (central, *nb):
                if e not in elements:
                    raise InputNNError(f"element '{e}' is not in the 'elements' line", path, n)
            sf = SymmetryFunction(
                t, central, nb, eta / length_unit**2, rc * length_unit, rs=rs * length_unit, zeta=zeta, lam=lam,
                cutoff=kind, alpha=alpha,
            )
        except ValueError as exc:
            if isinstance(exc, InputNNError):
                raise
            raise InputNNError(str(exc), path, n) from None
        out.append((n, sf, (eta, rs, rc)))
    return out


def n2p2_sort_key(sf: SymmetryFunction, file_params, element_index: dict):
    """n2p2's order of an element's symmetry functions (see Element::sortSymmetryFunctions)."""
    eta, rs, rc = file_params
    nb = tuple(element_index[e] for e in sf.neighbors)
    # n2p2: (central, type, cutoff type, alpha, rc, eta, rs[, zeta, lambda], e1[, e2]), all ascending,
    # neighbour elements by index (atomic-number order); cutoff type/alpha are equal for all functions
    if sf.type == 2:
        return (sf.type, rc, eta, rs, nb)
    return (sf.type, rc, eta, rs, sf.zeta, sf.lam, nb)


def read_scaling(path, n_per_element: list[int]) -> np.ndarray:
    """``scaling.data`` rows → array (n_elements, max_n, 4) of (min, max, mean, sigma)."""
    path = Path(path)
    src = str(path)
    out = np.full((len(n_per_element), max(n_per_element), 4), np.nan)
    for n, tok in _lines(path, ScalingDataError):
        if len(tok) != 6:
            raise ScalingDataError(f"expected 6 columns (e_index sf_index min max mean sigma), got {len(tok)}", src, n)
        try:
            e, k = int(tok[0]) - 1, int(tok[1]) - 1
        except ValueError:
            raise ScalingDataError("element and function indices must be integers", src, n) from None
        if not (0 <= e < len(n_per_element)) or not (0 <= k < n_per_element[e]):
            raise ScalingDataError(f"index ({e + 1}, {k + 1}) out of range", src, n)
        if not np.isnan(out[e, k, 0]):
            raise ScalingDataError(f"row for element {e + 1}, function {k + 1} given twice", src, n)
        out[e, k] = [_float(t, ScalingDataError, src, n) for t in tok[2:]]
    for e, cnt in enumerate(n_per_element):
        missing = np.flatnonzero(np.isnan(out[e, :cnt, 0]))
        if len(missing):
            raise ScalingDataError(f"no row for element {e + 1}, function {missing[0] + 1}", src)
    return np.nan_to_num(out)


def read_weights(path, layer_sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``weights.NNN.data`` → [(W (n_out, n_in), b (n_out,)) per layer], checking every connection once."""
    path = Path(path)
    src = str(path)
    Ws = [np.full((layer_sizes[k + 1], layer_sizes[k]), np.nan) for k in range(len(layer_sizes) - 1)]
    bs = [np.full(layer_sizes[k + 1], np.nan) for k in range(len(layer_sizes) - 1)]
    rows = _lines(path, WeightsFileError)
    if not rows:
        raise WeightsFileError("file holds no weights", src)
    for n, tok in rows:
        if len(tok) == 1:
            raise WeightsFileError("old single-column weights format is not supported (need 7 columns)", src, n)
        if len(tok) != (5 if tok[1] == "b" else 7):
            raise WeightsFileError(f"expected 7 columns for a weight, 5 for a bias, got {len(tok)}", src, n)
        value = _float(tok[0], WeightsFileError, src, n)
        try:
            idx = [int(t) for t in tok[3:]]
        except ValueError:
            raise WeightsFileError("layer/neuron indices must be integers", src, n) from None
        if tok[1] == "a" and len(idx) == 4:
            ls, ns, le, ne = idx
            if not (0 <= ls < len(Ws) and le == ls + 1 and 1 <= ns <= layer_sizes[ls] and 1 <= ne <= layer_sizes[le]):
                raise WeightsFileError(f"connection {ls}:{ns} -> {le}:{ne} does not fit the network", src, n)
            if not np.isnan(Ws[ls][ne - 1, ns - 1]):
                raise WeightsFileError(f"connection {ls}:{ns} -> {le}:{ne} given twice", src, n)
            Ws[ls][ne - 1, ns - 1] = value
        elif tok[1] == "b" and len(idx) == 2:
            le, ne = idx
            if not (1 <= le <= len(bs) and 1 <= ne <= layer_sizes[le]):
                raise WeightsFileError(f"bias {le}:{ne} does not fit the network", src, n)
            if not np.isnan(bs[le - 1][ne - 1]):
                raise WeightsFileError(f"bias {le}:{ne} given twice", src, n)
            bs[le - 1][ne - 1] = value
        else:
            raise WeightsFileError(f"connection type '{tok[1]}' unknown (a or b)", src, n)
    n_expected = sum(W.size + b.size for W, b in zip(Ws, bs))
    for ls, (W, b) in enumerate(zip(Ws, bs)):
        if np.isnan(W).any():
            ne, ns = np.argwhere(np.isnan(W))[0] + 1
            raise WeightsFileError(f"connection {ls}:{ns} -> {ls + 1}:{ne} missing "
                                   f"({len(rows)} connections for a network that has {n_expected})", src)
        if np.isnan(b).any():
            ne = np.flatnonzero(np.isnan(b))[0] + 1
            raise WeightsFileError(f"bias {ls + 1}:{ne} missing "
                                   f"({len(rows)} connections for a network that has {n_expected})", src)
    return list(zip(Ws, bs))


def _acsf(settings: dict, inp: Path, length_unit: float) -> ACSF:
    """The symmetry functions of a parsed input.nn, per element in n2p2's order."""
    # n2p2 orders elements by atomic number (ElementMap); indices in scaling.data follow it
    elements = sorted(settings["elements"], key=lambda e: atomic_numbers[e])
    el_index = {e: k for k, e in enumerate(elements)}
    sfs = _symmetry_functions(settings, str(inp), length_unit)
    per_element = []
    for e in elements:
        mine = [(n, sf, fp) for n, sf, fp in sfs if sf.central == e]
        if not mine:
            raise InputNNError(f"no symmetry functions for element {e}", str(inp))
        mine.sort(key=lambda t: n2p2_sort_key(t[1], t[2], el_index))
        per_element.append([sf for _, sf, _ in mine])
    return ACSF(elements, [sf for fs in per_element for sf in fs])


def acsf_from_input_nn(path, elements=None, length_unit: float | str = 1.0) -> ACSF:
    """The symmetry functions of an n2p2 ``input.nn`` (a file, or a folder holding one) as an ACSF
    descriptor in Å (``descriptor=n2p2``). ``length_unit``: Å per length unit of the file (or ``bohr``);
    ``elements``, when given, must be the file's elements (a different set is an error naming both)."""
    inp = Path(path)
    if inp.is_dir():
        inp = inp / "input.nn"
    if isinstance(length_unit, str):
        if length_unit.lower() not in ("bohr", "angstrom"):
            raise InputNNError(f"length_unit must be a number, 'bohr' or 'angstrom', got {length_unit!r}", str(inp))
        length_unit = BOHR if length_unit.lower() == "bohr" else 1.0
    descriptor = _acsf(read_input_nn(inp), inp, float(length_unit))
    if elements is not None and sorted(elements) != sorted(descriptor.elements):
        raise InputNNError(f"the data's elements {sorted(elements)} differ from the file's {sorted(descriptor.elements)}",
                           str(inp))
    return descriptor


def load(folder, length_unit: float = 1.0, energy_unit: float = 1.0, epoch: int | None = None) -> Potential:
    """An n2p2 potential as a float64 :class:`~mlpot.Potential` in Å and eV.

    ``length_unit`` / ``energy_unit``: Å and eV per unit of the files (e.g.
    ``mlpot.units.BOHR`` and ``mlpot.units.HARTREE`` for Bohr/Hartree files).
    ``epoch`` picks ``weights.NNN.data.EEEEEE`` files where present.
    """
    folder = Path(folder)
    inp = folder / "input.nn"
    settings = read_input_nn(inp)
    descriptor = _acsf(settings, inp, length_unit)
    elements = descriptor.elements
    el_index = {e: k for k, e in enumerate(elements)}

    n_per = descriptor.n_features_per_element
    stats = read_scaling(folder / "scaling.data", n_per)
    scaling = settings["scaling"]
    if "scale_symmetry_functions_sigma" in scaling:
        mode = "sigma"
    elif {"scale_symmetry_functions", "center_symmetry_functions"} <= scaling:
        mode = "minmax_center"
    elif "scale_symmetry_functions" in scaling:
        mode = "minmax"
    elif "center_symmetry_functions" in scaling:
        mode = "center"
    else:
        mode = "none"
    scaler = FeatureScaler(len(elements), descriptor.n_features, mode, settings.get("scale_min_short", 0.0),
                           settings.get("scale_max_short", 1.0))
    scaler.set_stats(*(torch.from_numpy(stats[..., k]) for k in range(4)))

    acts = [ACTIVATION_LETTERS[a] for a in settings["global_activation_short"][0][:-1]]
    hidden = settings["global_nodes_short"]
    conv_energy = settings.get("conv_energy", 1.0)
    mean_energy = settings.get("mean_energy", 0.0)
    e0 = [energy_unit * (mean_energy + settings["atom_energy"].get(e, 0.0)) for e in elements]
    head = HDNNP(n_per, hidden, acts, e0=e0, energy_scale=[energy_unit / conv_energy] * len(elements)).double()
    for e, net in zip(elements, head.nets.nets):
        name = f"weights.{atomic_numbers[e]:03d}.data"
        wpath = folder / (name if epoch is None else f"{name}.{epoch:06d}")
        layers = read_weights(wpath, [n_per[el_index[e]], *hidden, 1])
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for lin, (W, b) in zip(linears, layers):
                lin.weight.copy_(torch.from_numpy(W))
                lin.bias.copy_(torch.from_numpy(b))
    meta = {"source": "n2p2", "folder": str(folder), "length_unit": length_unit, "energy_unit": energy_unit}
    return Potential(elements, descriptor, head, scaler, metadata=meta).double()




# ---------------------------------------------------------------------------------------------------------------
# Export: the reverse of :func:`load`
# ---------------------------------------------------------------------------------------------------------------

LETTERS_OF_ACTIVATION = {name: letter for letter, name in ACTIVATION_LETTERS.items()}
ACTIVATION_ALIASES = {"sigmoid": "logistic"}
CUTOFF_NUMBERS = {name: number for number, name in N2P2_CUTOFF_TYPES.items()}
SCALING_MODE_KEYWORDS = {
    "none": (),
    "minmax": ("scale_symmetry_functions",),
    "center": ("center_symmetry_functions",),
    "minmax_center": ("scale_symmetry_functions", "center_symmetry_functions"),
    "sigma": ("scale_symmetry_functions_sigma",),
}


def _num(x: float) -> str:
    """A float that reads back bit for bit (n2p2 parses with atof)."""
    return repr(float(x))


def _n2p2_order(descriptor: ACSF, elements_z: list[str]) -> list[list[int]]:
    """Per element (atomic-number order): the mlpot feature columns in n2p2's sorted order."""
    el_index = {e: k for k, e in enumerate(elements_z)}
    out = []
    for e in elements_z:
        fs = descriptor.per_element[descriptor.elements.index(e)]
        keys = [n2p2_sort_key(_n2p2_neighbours(f, el_index), (f.eta, f.rs, f.rc), el_index) for f in fs]
        out.append(sorted(range(len(fs)), key=lambda k: keys[k]))
    return out


def _n2p2_neighbours(f: SymmetryFunction, el_index: dict) -> SymmetryFunction:
    """``f`` with its angular neighbour pair in n2p2's (atomic-number) order."""
    if not f.angular:
        return f
    nb = tuple(sorted(f.neighbors, key=lambda e: el_index[e]))
    return SymmetryFunction(f.type, f.central, nb, f.eta, f.rc, rs=f.rs, zeta=f.zeta, lam=f.lam, cutoff=f.cutoff,
                            alpha=f.alpha)


def _activation_letters(head) -> list[str]:
    acts = head.activation
    acts = [acts] * len(head.hidden) if isinstance(acts, str) else list(acts)
    letters = []
    for a in acts:
        name = ACTIVATION_ALIASES.get(a.lower(), a.lower())
        if name not in LETTERS_OF_ACTIVATION:
            raise ExportFormatError(f"n2p2 export: activation '{a}' has no n2p2 equivalent "
                                    f"(n2p2 has {', '.join(sorted(LETTERS_OF_ACTIVATION))})")
        letters.append(LETTERS_OF_ACTIVATION[name])
    return letters + ["l"]


def _check_exportable(potential: Potential) -> tuple[str, float]:
    """Raise :class:`ExportFormatError` for anything n2p2 cannot express; returns the (cutoff name, alpha)."""
    d, head, scaler = potential.descriptor, potential.head, potential.scaler
    if not isinstance(d, ACSF):
        raise ExportFormatError(f"n2p2 export needs an ACSF (symmetry-function) descriptor; this model's descriptor "
                                f"is {type(d).__name__}")
    if type(head) is not HDNNP:
        raise ExportFormatError(f"n2p2 export needs an HDNNP head; this model's head is {type(head).__name__}")
    if head.linear is not None and bool((head.linear.detach() * head.linear_mask).abs().max() > 0):
        raise ExportFormatError("n2p2 export: the HDNNP's linear readout (linear=true) has no n2p2 equivalent")
    if type(scaler) is not FeatureScaler or scaler.mode not in SCALING_MODE_KEYWORDS:
        raise ExportFormatError(f"n2p2 export: scaler {type(scaler).__name__} mode '{getattr(scaler, 'mode', '?')}' "
                                f"has no n2p2 scaling keyword")
    _activation_letters(head)
    for e in potential.elements:
        if e not in atomic_numbers:
            raise ExportFormatError(f"n2p2 export: '{e}' is not a chemical element")
    cuts = {(f.cutoff, f.alpha) for f in d.functions}
    if len(cuts) != 1:
        raise ExportFormatError(f"n2p2 export: n2p2 has one cutoff_type for all symmetry functions; this model "
                                f"mixes {sorted(cuts)}")
    (kind, alpha), = cuts
    if kind not in CUTOFF_NUMBERS:
        raise ExportFormatError(f"n2p2 export: cutoff function '{kind}' has no n2p2 cutoff_type")
    for e, n in zip(d.elements, d.n_features_per_element):
        if n == 0:
            raise ExportFormatError(f"n2p2 export: element {e} has no symmetry function (n2p2 needs at least one)")
    # n2p2 scales each component from its statistics: (a, b) must follow from (gmin, gmax, gmean, gsigma)
    a, b = affine_from_stats(scaler.mode, *(getattr(scaler, k).double() for k in ("gmin", "gmax", "gmean", "gsigma")),
                             scaler.smin, scaler.smax)
    # to the rounding of the scaler's own dtype (a float32 model keeps a and b in float32)
    rtol = 1e-12 if scaler.a.dtype == torch.float64 else 8 * torch.finfo(scaler.a.dtype).eps
    for e, n in enumerate(d.n_features_per_element):
        scale = float((a[e, :n] * scaler.gmean[e, :n].double()).abs().max()) if n else 0.0
        ok = torch.allclose(a[e, :n], scaler.a[e, :n].double(), rtol=rtol, atol=0) and \
            torch.allclose(b[e, :n], scaler.b[e, :n].double(), rtol=rtol, atol=max(1e-14, rtol * scale))
        if not ok:
            raise ExportFormatError(f"n2p2 export: the scaler's (a, b) of element {d.elements[e]} do not follow from "
                                    f"its statistics in mode '{scaler.mode}' (set by hand?); n2p2 cannot express "
                                    f"an arbitrary affine scaling")
    return kind, float(alpha)


def _exported_layers(potential: Potential, e: str, cols: list[int], spread_zero: np.ndarray):
    """The network of element ``e`` as n2p2 sees it: inputs permuted to n2p2's order, the output scale folded
    into the last layer, components of zero spread (mlpot: constant input b) folded into the first bias."""
    head = potential.head
    k = potential.elements.index(e)
    linears = [m for m in head.nets.nets[k] if isinstance(m, torch.nn.Linear)]
    layers = [(lin.weight.detach().double().cpu().numpy().copy(), lin.bias.detach().double().cpu().numpy().copy())
              for lin in linears]
    W0, b0 = layers[0]
    const = potential.scaler.b[k].detach().double().cpu().numpy()
    for j in np.flatnonzero(spread_zero):
        b0 += W0[:, j] * const[j]
        W0[:, j] = 0.0
    layers[0] = (W0[:, cols], b0)
    s = float(head.energy_scale[k])
    W, b = layers[-1]
    layers[-1] = (W * s, b * s)
    return layers


def _weights_text(layers, source: str) -> str:
    """``weights.NNN.data``: n2p2's connection order (per layer: weights by source then target neuron, then the
    biases of the layer), with n2p2's index columns."""
    rows = [f"# n2p2 weights written by mlpot.io.n2p2.write from {source}",
            "# value type index layer_start neuron_start layer_end neuron_end  (biases: value b index layer neuron)"]
    n = 0
    for ls, (W, b) in enumerate(layers):
        n_out, n_in = W.shape
        for ns in range(n_in):
            for ne in range(n_out):
                n += 1
                rows.append(f"{W[ne, ns]: .17e} a {n:9d} {ls:5d} {ns + 1:5d} {ls + 1:5d} {ne + 1:5d}")
        for ne in range(n_out):
            n += 1
            rows.append(f"{b[ne]: .17e} b {n:9d} {ls + 1:5d} {ne + 1:5d}")
    return "\n".join(rows) + "\n"


def write(potential, folder, source: str | None = None) -> Path:
    """Write ``potential`` (a :class:`~mlpot.Potential`, or the path of an exported ``model.pt``) as an n2p2
    potential in ``folder``: ``input.nn``, ``scaling.data`` and ``weights.NNN.data`` (NNN = atomic number), in Å and
    eV without n2p2's normalisation; :func:`load` reads it back to the same energies and forces.

    Per-element ``e0`` become ``atom_energy`` lines; the head's ``energy_scale`` is folded into the last layer.
    Needs an ACSF descriptor with one cutoff function, an HDNNP head with n2p2's activations and a
    :class:`FeatureScaler` whose (a, b) follow from its statistics; anything else raises
    :class:`~mlpot.errors.ExportFormatError` naming what is unsupported. Returns the folder.
    """
    if isinstance(potential, (str, Path)):
        from mlpot import export

        source = source or str(potential)
        potential = export.load(potential)
    source = source or potential.metadata.get("folder", "an mlpot Potential")
    kind, alpha = _check_exportable(potential)
    d, head, scaler = potential.descriptor, potential.head, potential.scaler
    elements_z = sorted(potential.elements, key=lambda e: atomic_numbers[e])
    el_index = {e: k for k, e in enumerate(elements_z)}
    order = _n2p2_order(d, elements_z)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    # statistics; a component of zero spread is constant in mlpot (a = 0): n2p2 would divide by zero, so it gets a
    # spread of 1 here and its (constant) contribution moves into the first layer's bias
    stats = torch.stack([getattr(scaler, k).detach().double().cpu() for k in ("gmin", "gmax", "gmean", "gsigma")], -1)
    stats = stats.numpy().copy()
    rows = ["# n2p2 symmetry-function scaling data written by mlpot.io.n2p2.write",
            "# element_index function_index Gmin Gmax Gmean Gsigma (functions in n2p2's sorted order)"]
    zero_spread = {}
    for e in elements_z:
        k = potential.elements.index(e)
        n = d.n_features_per_element[k]
        st = stats[k, :n]
        if scaler.mode in ("minmax", "minmax_center"):
            zero = ~(st[:, 1] - st[:, 0] > 0)
            st[zero, 1] = st[zero, 0] + 1.0
        elif scaler.mode == "sigma":
            zero = ~(st[:, 3] > 0)
            st[zero, 3] = 1.0
        else:
            zero = np.zeros(n, dtype=bool)
        zero_spread[e] = zero
        for pos, col in enumerate(order[el_index[e]]):
            rows.append(f"{el_index[e] + 1:4d} {pos + 1:5d} " + " ".join(f"{v: .17e}" for v in st[col]))
    scaling_text = "\n".join(rows) + "\n"

    letters = _activation_letters(head)
    lines = [f"# n2p2 potential written by mlpot.io.n2p2.write from {source}",
             "# units: Angstrom and eV (no normalisation)",
             f"number_of_elements {len(elements_z)}",
             f"elements {' '.join(elements_z)}",
             f"cutoff_type {CUTOFF_NUMBERS[kind]} {_num(alpha)}"]
    lines += list(SCALING_MODE_KEYWORDS[scaler.mode])
    lines += [f"scale_min_short {_num(scaler.smin)}", f"scale_max_short {_num(scaler.smax)}",
              f"global_hidden_layers_short {len(head.hidden)}",
              f"global_nodes_short {' '.join(str(h) for h in head.hidden)}",
              f"global_activation_short {' '.join(letters)}"]
    for e in elements_z:
        lines.append(f"atom_energy {e} {_num(head.e0[potential.elements.index(e)])}")
    lines.append("# symfunction_short <central> 2 <neighbour> <eta> <rs> <rc>")
    lines.append("# symfunction_short <central> 3|9 <neighbour1> <neighbour2> <eta> <lambda> <zeta> <rc> <rs>")
    for e, cols in zip(elements_z, order):
        fs = d.per_element[d.elements.index(e)]
        for col in cols:
            f = _n2p2_neighbours(fs[col], el_index)
            if f.angular:
                lines.append(f"symfunction_short {e} {f.type} {f.neighbors[0]} {f.neighbors[1]} {_num(f.eta)} "
                             f"{_num(f.lam)} {_num(f.zeta)} {_num(f.rc)} {_num(f.rs)}")
            else:
                lines.append(f"symfunction_short {e} 2 {f.neighbors[0]} {_num(f.eta)} {_num(f.rs)} {_num(f.rc)}")
    input_nn = "\n".join(lines) + "\n"

    weights = {}
    for e, cols in zip(elements_z, order):
        layers = _exported_layers(potential, e, cols, zero_spread[e])
        weights[f"weights.{atomic_numbers[e]:03d}.data"] = _weights_text(layers, source)

    write_text(folder / "input.nn", input_nn)
    write_text(folder / "scaling.data", scaling_text)
    for name, text in weights.items():
        write_text(folder / name, text)
    return folder
