"""Train/val/test splits: random, config_type (wildcards), time-ordered tail, carve_validation."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from mlpot.data.splits import SplitError, carve_validation, split_frames
from mlpot.errors import DataError


def frame(**info) -> Atoms:
    atoms = Atoms("H", positions=[[0.0, 0.0, 0.0]])
    atoms.info.update(info)
    return atoms


def assert_partition(split, n):
    assert set(split) == {"train", "val", "test"}
    everything = split["train"] + split["val"] + split["test"]
    assert sorted(everything) == list(range(n))  # disjoint and covering
    assert all(isinstance(k, int) for k in everything)


def shuffled_trajectories(n_traj=3, n_steps=20, seed=0):
    """Frames of several trajectories, interleaved in file order at random, with info trajectory/step."""
    frames = [frame(trajectory=t, step=10 * s, config_type=f"md_{t}") for t in range(n_traj) for s in range(n_steps)]
    order = np.random.default_rng(seed).permutation(len(frames))
    return [frames[k] for k in order]


# -- random ------------------------------------------------------------------------------------------
def test_random_partition_sizes_and_seed():
    frames = [frame() for _ in range(100)]
    a = split_frames(frames, seed=3)
    assert_partition(a, 100)
    assert [len(a[k]) for k in ("train", "val", "test")] == [80, 10, 10]
    assert a == split_frames(frames, seed=3)
    assert a != split_frames(frames, seed=4)
    assert all(v == sorted(v) for v in a.values())
    b = split_frames(frames, fractions=(0.6, 0.24, 0.16))
    assert [len(b[k]) for k in ("train", "val", "test")] == [60, 24, 16]


def test_random_small_sets_keep_validation():
    for n in (2, 3, 5, 6, 7):
        split = split_frames([frame() for _ in range(n)], fractions=(0.8, 0.1, 0.1))
        assert_partition(split, n)
        assert split["val"]
    two = split_frames([frame(), frame()], fractions=(0.8, 0.1, 0.1))
    assert (len(two["train"]), len(two["val"]), two["test"]) == (1, 1, [])
    split = split_frames([frame() for _ in range(5)], fractions=(0.8, 0.05, 0.15))
    assert [len(split[k]) for k in ("train", "val", "test")] == [4, 1, 0]
    split = split_frames([frame() for _ in range(10)], fractions=(0.9, 0.1, 0.0))
    assert (len(split["train"]), len(split["val"]), split["test"]) == (9, 1, [])


# -- fractions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fractions, match", [
    ((0.8, 0.1, 0.2), "sum to 1"),
    ((0.5, 0.5), "three numbers"),
    ((1.2, -0.1, -0.1), "non-negative"),
    ((0.8, float("nan"), 0.2), "finite"),
])
def test_bad_fractions(fractions, match):
    with pytest.raises(ValueError, match=match):
        split_frames([frame() for _ in range(10)], fractions=fractions)


def test_fractions_within_tolerance():
    assert_partition(split_frames([frame() for _ in range(10)], fractions=(0.8, 0.1, 0.1 + 5e-7)), 10)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown split kind 'time'"):
        split_frames([frame() for _ in range(10)], kind="time")


# -- empty sets --------------------------------------------------------------------------------------
def test_empty_validation_names_source_and_kind():
    frames = [frame() for _ in range(10)]
    with pytest.raises(SplitError) as err:
        split_frames(frames, fractions=(1.0, 0.0, 0.0), source="data/train.xyz")
    msg = str(err.value)
    assert isinstance(err.value, DataError)
    assert "\n" not in msg
    assert msg.startswith("data/train.xyz: ") and "random split" in msg and "validation" in msg
    with pytest.raises(SplitError, match=r"^Cu\.xyz: tail split leaves the validation set empty"):
        split_frames(shuffled_trajectories(n_steps=3), kind="tail", fractions=(0.9, 0.0, 0.1), source="Cu.xyz")


def test_empty_train_and_default_source():
    frames = [frame(mlpot_source="read.xyz", mlpot_frame=k) for k in range(4)]
    with pytest.raises(SplitError, match=r"^read\.xyz: random split leaves the training set empty"):
        split_frames(frames, fractions=(0.0, 0.5, 0.5))


def test_single_frame_cannot_be_split():
    with pytest.raises(SplitError, match=r"one\.xyz"):
        split_frames([frame()], source="one.xyz")


# -- tail --------------------------------------------------------------------------------------------
def test_tail_last_frames_of_every_trajectory_in_time_order():
    frames = shuffled_trajectories(n_traj=3, n_steps=20)
    split = split_frames(frames, kind="tail", fractions=(0.8, 0.1, 0.1))
    assert_partition(split, len(frames))
    for part, steps in (("train", range(0, 160, 10)), ("val", (160, 170)), ("test", (180, 190))):
        for t in range(3):
            got = [frames[k].info["step"] for k in split[part] if frames[k].info["trajectory"] == t]
            assert got == list(steps), (part, t)  # the right frames, in time order
    # each part is grouped by trajectory: indices of one trajectory are contiguous
    for part in split.values():
        trajs = [frames[k].info["trajectory"] for k in part]
        assert [t for i, t in enumerate(trajs) if i == 0 or t != trajs[i - 1]] == sorted(set(trajs), key=trajs.index)
    assert split == split_frames(frames, kind="tail", seed=123)  # no randomness


def test_tail_uneven_shares():
    frames = shuffled_trajectories(n_traj=2, n_steps=10)
    split = split_frames(frames, kind="tail", fractions=(0.6, 0.3, 0.1))
    for t in range(2):
        for part, n in (("train", 6), ("val", 3), ("test", 1)):
            assert sum(frames[k].info["trajectory"] == t for k in split[part]) == n


def test_tail_groups_by_config_type_then_file_order():
    # no 'trajectory': grouped by config_type; no 'step': file order
    frames = [frame(config_type="a" if k % 2 else "b") for k in range(20)]
    split = split_frames(frames, kind="tail", fractions=(0.8, 0.1, 0.1))
    # groups in first-appearance order: "b" (even indices) then "a" (odd)
    assert split == {"train": [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15], "val": [16, 17], "test": [18, 19]}
    # nothing at all: the whole list in file order
    plain = [frame() for _ in range(10)]
    assert split_frames(plain, kind="tail") == {"train": list(range(8)), "val": [8], "test": [9]}


# -- config_type -------------------------------------------------------------------------------------
def test_config_type_with_wildcards():
    types = ["Volume_A", "Volume_B", "Surface_100", "Bulk", "Surface_111", "Volume_A", "Bulk", None]
    frames = [frame() if t is None else frame(config_type=t) for t in types]
    split = split_frames(frames, kind="config_type", val_types=["Volume_*"], test_types=["Surface_1?1"])
    assert_partition(split, len(frames))
    assert split == {"val": [0, 1, 5], "test": [4], "train": [2, 3, 6, 7]}
    assert split_frames(frames, kind="config_type", val_types="Bulk")["val"] == [3, 6]


def test_config_type_errors():
    frames = [frame(config_type=t) for t in ("Bulk", "Surface", "Volume_A")]
    with pytest.raises(SplitError, match=r"x\.xyz: config_type split: val_types entry 'Volum_\*' matches no "):
        split_frames(frames, kind="config_type", val_types=["Volum_*"], source="x.xyz")
    with pytest.raises(ValueError, match="matches both"):
        split_frames(frames, kind="config_type", val_types=["*"], test_types=["Bulk"])
    with pytest.raises(SplitError, match="needs val_types"):
        split_frames(frames, kind="config_type")
    with pytest.raises(SplitError, match="training set empty"):
        split_frames(frames, kind="config_type", val_types=["Bulk", "Volume_*"], test_types=["Surface"])


# -- carve_validation --------------------------------------------------------------------------------
def test_carve_validation():
    idx = list(range(100, 150))
    train, val = carve_validation(idx, 0.2, seed=1)
    assert sorted(train + val) == idx and len(val) == 10
    assert train == sorted(train) and val == sorted(val)
    assert (train, val) == carve_validation(idx, 0.2, seed=1)
    assert val != carve_validation(idx, 0.2, seed=2)[1]
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        carve_validation(idx, 1.0)
    with pytest.raises(SplitError, match=r"train\.xyz: .*validation set empty"):
        carve_validation([0, 1, 2], 0.1, source="train.xyz")
