"""The cached-Jacobian training path equals the autograd path of Potential.forward."""

import pytest
import torch

from mlpot.data import atoms_to_graph
from mlpot.training.cache import collate, precompute, predict_cached
from tests.helpers import random_cell, random_potential


@pytest.mark.parametrize("cutoff", ["cos", "poly2", "tanh"])
def test_cached_equals_autograd(cutoff):
    pot = random_potential(["Cu", "S"], types=(2, 3, 9), cutoff=4.0, cutoff_function=cutoff, alpha=0.1, seed=2)
    frames = [random_cell(["Cu", "S", "Cu", "S", "S"], a=3.6, seed=s) for s in range(3)]
    frames.append(random_cell(["Cu", "Cu"], a=2.9, seed=7))
    records = precompute(pot.descriptor, frames, pot.elements, pot.cutoff, dtype=torch.float64, chunk=3)
    batch = collate(records)
    cached = predict_cached(pot, batch, forces=True, stress=True)
    ref = pot(atoms_to_graph(frames, pot.elements, pot.cutoff), forces=True, stress=True)
    for key in ("energy", "atomic_energies", "forces", "stress"):
        torch.testing.assert_close(cached[key].detach(), ref[key].detach(), rtol=0, atol=1e-10)
    # subsets batch the same way
    sub = predict_cached(pot, collate([records[3], records[1]]), forces=True)
    torch.testing.assert_close(sub["energy"].detach(), ref["energy"].detach()[[3, 1]], rtol=0, atol=1e-10)


def test_stored_cache_reuses_records_and_tells_frames_apart(tmp_path, monkeypatch):
    """``precompute_stored`` returns the records ``precompute`` gives, computes each frame once across
    calls (a sweep's runs), keeps frames with other positions or labels apart, and ignores a damaged store."""
    import mlpot.training.cache as cache
    from mlpot.data.frames import set_label

    pot = random_potential(["Cu", "S"], types=(2, 9), cutoff=4.0, seed=2)
    frames = [random_cell(["Cu", "S", "Cu", "S"], a=3.6, seed=s) for s in range(3)]
    for k, f in enumerate(frames):
        set_label(f, "energy", float(k))
    args = (pot.elements, pot.cutoff, torch.float64, tmp_path)
    first = cache.precompute_stored(pot.descriptor, frames, *args)
    plain = precompute(pot.descriptor, frames, pot.elements, pot.cutoff, dtype=torch.float64)
    for a, b in zip(first, plain):
        for key in ("G", "J", "energy"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    computed = []
    real = cache.precompute
    monkeypatch.setattr(cache, "precompute", lambda d, fr, *a, **k: computed.append(len(fr)) or real(d, fr, *a, **k))
    moved = frames[1].copy()
    moved.positions[0, 0] += 0.01
    relabelled = frames[2].copy()
    set_label(relabelled, "energy", 9.0)
    again = cache.precompute_stored(pot.descriptor, [frames[2], moved, frames[0], relabelled], *args)
    assert computed == [2]  # only the moved and the relabelled frame
    torch.testing.assert_close(again[0]["G"], plain[2]["G"], rtol=0, atol=0)
    assert again[3]["energy"].item() == 9.0 and not torch.equal(again[1]["G"], plain[1]["G"])
    (store,) = tmp_path.glob("*.pt")
    store.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable descriptor cache"):
        cache.precompute_stored(pot.descriptor, frames[:1], *args)
    assert computed == [2, 1]
