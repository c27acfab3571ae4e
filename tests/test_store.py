"""The frame store: conversion of every source format, lazy reads equal to the readers, reuse keyed by
content, rebuilds after a change or a half-written store, and a clear message for another format."""

from __future__ import annotations

import json
import logging

import ase.io
import h5py
import numpy as np
import pytest
from ase import Atoms

import mlpot.data.store as store_mod
from mlpot.data.frames import LABELS, get_label, read_frames
from mlpot.data.store import FrameStore, StoreError, open_prepared, open_store


def _frames(n=5, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = Atoms(["Cu", "Au", "Cu"][: 2 + k % 2], positions=rng.uniform(0, 3, (2 + k % 2, 3)), cell=np.eye(3) * 4.0,
                  pbc=[True, True, k % 2 == 0])
        a.info["config_type"] = "bulk" if k < 3 else "slab"
        a.info["trajectory"] = k % 2
        a.info["step"] = 10 * k
        if k != 1:
            a.info["energy"] = -1.0 - k
        a.arrays["forces"] = rng.normal(size=(len(a), 3))
        if k % 2 == 0:
            a.info["stress"] = rng.normal(size=6)
            a.arrays["energies"] = rng.normal(size=len(a))
        out.append(a)
    return out


@pytest.fixture
def xyz(tmp_path):
    path = tmp_path / "data.extxyz"
    ase.io.write(path, _frames())
    return path


def _same(atoms, ref):
    np.testing.assert_array_equal(atoms.numbers, ref.numbers)
    np.testing.assert_array_equal(atoms.positions, ref.positions)
    np.testing.assert_array_equal(atoms.cell.array, ref.cell.array)
    np.testing.assert_array_equal(atoms.pbc, ref.pbc)
    for label in LABELS:
        a, b = get_label(atoms, label), get_label(ref, label)
        assert (a is None) == (b is None), label
        if a is not None:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for key in ("config_type", "trajectory", "step", "mlpot_source", "mlpot_frame"):
        assert atoms.info.get(key) == ref.info.get(key), key


def test_store_reads_back_what_the_readers_give(xyz, tmp_path):
    store = open_store([xyz], tmp_path / "cache")
    ref = read_frames(xyz)
    assert len(store) == len(ref) == 5 and list(store.n_atoms) == [len(a) for a in ref]
    for k, a in enumerate(ref):
        _same(store.atoms(k), a)
    assert store.has("energy").tolist() == [True, False, True, True, True]
    assert store.elements == [29, 79]
    assert store.composition([29, 79]).tolist() == [[1, 1], [2, 1], [1, 1], [2, 1], [1, 1]]
    assert store.source_of(3) == (str(xyz), 3)
    assert len(set(store.frame_hashes().tolist())) == 5


def test_other_formats_convert(tmp_path, shared_data):
    """PWmat MOVEMENT, aenet XSF and n2p2 input.data stream through the same conversion."""
    for path in (shared_data / "pwmat_lisi" / "lisi_50_movement", shared_data / "n2p2_cu2s" / "input.data",
                 sorted((shared_data / "aenet_tio2" / "xsf").glob("*.xsf"))[0]):
        store = open_store([path], tmp_path / "cache")
        ref = read_frames(path)
        assert len(store) == len(ref)
        for k in (0, len(ref) - 1):
            _same(store.atoms(k), ref[k])


def test_reused_by_content_rebuilt_after_a_change(xyz, tmp_path, monkeypatch):
    calls = []
    real = store_mod.convert
    monkeypatch.setattr(store_mod, "convert", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = open_store([xyz], tmp_path / "cache")
    again = open_store([xyz], tmp_path / "cache")
    assert calls == [1] and again.path == first.path
    copy = tmp_path / "copy.extxyz"  # the same content elsewhere: the same store
    copy.write_bytes(xyz.read_bytes())
    assert open_store([copy], tmp_path / "cache").path == first.path and calls == [1]
    frames = _frames()
    frames[2].positions[0, 0] += 0.5
    ase.io.write(xyz, frames)  # a changed source: a new store
    changed = open_store([xyz], tmp_path / "cache")
    assert calls == [1, 1] and changed.path != first.path
    assert changed.atoms(2).positions[0, 0] == pytest.approx(frames[2].positions[0, 0])


def test_half_written_and_damaged_stores_are_rebuilt(xyz, tmp_path, caplog):
    cache = tmp_path / "cache"
    store = open_store([xyz], cache)
    path = store.path
    store.close()
    # a conversion killed mid-way leaves a temporary file, never the store itself; it is cleared on the next build
    dead = cache / f".{path.name}.999999.partial"
    dead.write_bytes(b"half")
    path.unlink()
    open_store([xyz], cache).close()
    assert not dead.exists() and path.exists()
    # a store without its completion mark (e.g. copied while written) is not read as complete
    with h5py.File(path, "a") as h5:
        del h5.attrs["complete"]
    with caplog.at_level(logging.WARNING):
        rebuilt = open_store([xyz], cache)
    assert "incomplete" in caplog.text and len(rebuilt) == 5
    rebuilt.close()
    # a truncated file (disk full) is rebuilt as well
    path.write_bytes(path.read_bytes()[:1000])
    assert len(open_store([xyz], cache)) == 5


def test_a_store_of_another_format_gets_a_clear_message(xyz, tmp_path):
    store = open_store([xyz], tmp_path / "cache")
    old = tmp_path / "old.h5"
    old.write_bytes(store.path.read_bytes())
    with h5py.File(old, "a") as h5:
        h5.attrs["format"] = 99
        h5.attrs["mlpot_version"] = "9.9"
    with pytest.raises(StoreError, match=r"old.h5: frame store has format 99 \(written by mlpot 9.9\).*mlpot-prepare"):
        open_prepared(old)
    with pytest.raises(StoreError, match="not a readable mlpot store"):
        (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"0" * 100)
        open_prepared(tmp_path / "junk.h5")


def test_conversion_reports_progress(xyz, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="mlpot"):
        open_store([xyz], tmp_path / "cache")
    assert any("5 frames in" in r.getMessage() and "/s" in r.getMessage() for r in caplog.records)


def test_datamodule_on_a_prepared_store_and_its_splits(xyz, tmp_path):
    """``data.path`` may name a store (``mlpot-prepare``); splits are index lists; a frame is read lazily."""
    from mlpot.data.datamodule import AtomsDataModule

    store = open_store([xyz], tmp_path / "cache")
    dm = AtomsDataModule(path=store.path, split={"kind": "tail", "fractions": [0.6, 0.2, 0.2]},
                         cache_dir=tmp_path / "cache2")
    splits = dm.load()
    # tail split per trajectory (0: frames 0, 2, 4; 1: frames 1, 3), in step order
    assert {k: v.tolist() for k, v in splits.items()} == {"train": [0, 2, 1], "val": [4, 3], "test": []}
    assert dm.elements == ["Cu", "Au"]
    assert [len(a) for a in dm.atoms("val")] == [2, 3]
    assert not list((tmp_path / "cache2").glob("frames-*"))  # no second store


def test_prepare_cli_builds_what_training_uses(xyz, tmp_path, capsys):
    from mlpot.prepare import main

    cache = tmp_path / "cache"
    main(["data=xyz", f"data.path={xyz}", f"data.cache_dir={cache}", "training.forces=jacobian",
          "descriptor.cutoff=3.0", "descriptor.angular.rc=3.0", "data.split.fractions=[0.6,0.2,0.2]"])
    out = capsys.readouterr().out
    assert "frames: 5, atoms: 12" in out and "force path: jacobian" in out
    assert len(list(cache.glob("frames-*.h5"))) == 1 and len(list(cache.glob("jacobians-*.h5"))) == 1
    assert len(list(cache.glob("stats-*.json"))) == 1
    info = json.loads(json.dumps(FrameStore(next(cache.glob("frames-*.h5"))).sources))
    assert info[0]["path"] == str(xyz) and len(info[0]["sha256"]) == 64


def test_counted_handle_is_seekable_and_counts(tmp_path):
    """ASE's extxyz reader copies a handle it cannot seek into memory whole (the conversion's peak memory then grew
    with the file: 0.46 -> 0.90 GB for 500 -> 8 000 frames); the counted handle seeks, and its position follows."""
    import ase.io
    from ase.build import bulk

    from mlpot.data.frames import open_counted

    path = tmp_path / "f.extxyz"
    ase.io.write(path, [bulk("Cu", "fcc", a=3.6 + 0.01 * k, cubic=True) for k in range(50)])
    position = {}
    with open_counted(path, position) as fh:
        assert fh.seekable()
        frames = list(ase.io.iread(fh, index=":", format="extxyz"))
        assert position["bytes"] == path.stat().st_size
        fh.seek(0)
        assert position["bytes"] == 0
    assert len(frames) == 50 and frames[-1].cell[0, 0] == pytest.approx(3.6 + 0.49)
