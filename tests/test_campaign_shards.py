"""Shards and merge (issue 5, item 4): merged shards equal the unsharded run bit for bit."""
import h5py
import numpy as np
import pytest

from sgdsim import sim
from sgdsim.sim._plan import shard_range
from sgdsim.sim._runfile import TreeSum
from tests._campaign import assert_same_datasets, f2_sweep, sgdsim


def _resolved(raw):
    return sim.resolve_experiment(raw, "test.toml")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """An unsharded F2 sweep and its three shards (two with another chunk size and
    checkpoint interval, which change no result)."""
    folder = tmp_path_factory.mktemp("shards")
    raw = f2_sweep(trajectories=1900, steps=60, chunk=512)
    whole = folder / "whole.h5"
    sim.run_experiment(_resolved(raw), whole, quiet=True)
    shards = []
    for index in range(3):
        if index == 1:
            raw = f2_sweep(trajectories=1900, steps=60, chunk=256)  # chunk does not matter
            raw["run"]["checkpoint_seconds"] = 5  # nor does the checkpoint interval
        path = folder / f"shard{index}.h5"
        sim.run_experiment(_resolved(raw), path, quiet=True, shard=(index, 3))
        shards.append(path)
    return folder, whole, shards


def test_three_shards_merged_equal_the_unsharded_sweep(sharded):
    folder, whole, shards = sharded
    out = folder / "merged.h5"
    done = sgdsim("merge", *shards, "-o", out)
    assert done.returncode == 0, done.stderr
    assert_same_datasets(whole, out)
    with h5py.File(out, "r") as f:
        assert f.attrs["complete"] and "shard" not in f.attrs
        assert f["final/theta"].shape == (4, 1900, 1)
    # Order of the arguments does not matter.
    out2 = folder / "merged_reversed.h5"
    assert sgdsim("merge", *shards[::-1], "-o", out2).returncode == 0
    assert_same_datasets(whole, out2)


def test_merging_two_of_three_shards_is_refused(sharded):
    folder, _, shards = sharded
    out = folder / "partial.h5"
    done = sgdsim("merge", shards[0], shards[2], "-o", out)
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and "shard 1/3 missing" in done.stderr
    assert not out.exists()


def test_merging_mismatched_or_duplicate_shards_is_refused(sharded, tmp_path):
    folder, _, shards = sharded
    other = tmp_path / "other.h5"
    raw = f2_sweep(trajectories=1900, steps=61, chunk=512)
    sim.run_experiment(_resolved(raw), other, quiet=True, shard=(1, 3))
    out = tmp_path / "bad.h5"
    mismatched = sgdsim("merge", shards[0], other, shards[2], "-o", out)
    assert mismatched.returncode == 2
    assert "other.h5" in mismatched.stderr and "run.steps" in mismatched.stderr
    copy = tmp_path / "copy.h5"
    copy.write_bytes(shards[1].read_bytes())
    duplicate = sgdsim("merge", shards[0], shards[1], copy, shards[2], "-o", out)
    assert duplicate.returncode == 2 and "shard 1/3" in duplicate.stderr
    unsharded = sgdsim("merge", folder / "whole.h5", shards[0], "-o", out)
    assert unsharded.returncode == 2 and "not a shard file" in unsharded.stderr
    assert not out.exists()


def test_shard_ranges_cover_each_point_on_group_boundaries():
    for per_point in (1, 255, 256, 1900, 10_000, 123_457):
        for count in (1, 2, 3, 7):
            edges = [shard_range(per_point, (i, count)) for i in range(count)]
            assert edges[0][0] == 0 and edges[-1][1] == per_point
            for (_, hi), (lo, _) in zip(edges, edges[1:]):
                assert hi == lo and lo % 256 == 0


def test_tree_sum_does_not_depend_on_how_groups_arrive():
    rng = np.random.default_rng(3)
    leaves = rng.standard_normal((37, 2, 3)) * 10.0 ** rng.integers(-8, 8, (37, 1, 1))
    whole = TreeSum(37)
    whole.add_run(0, leaves)
    for cuts in ([5, 20], [1, 2, 3, 36], [16], [31, 32, 33]):
        pieces = np.split(np.arange(37), cuts)
        trees = []
        for piece in pieces[::-1]:  # arrive in reverse order
            tree = TreeSum(37)
            tree.add_run(int(piece[0]), leaves[piece])
            trees.append(tree)
        merged = TreeSum(37)
        for tree in trees:
            for (level, index), value in tree.nodes.items():
                merged.add(level, index, value)
        np.testing.assert_array_equal(merged.root(), whole.root())
    one_by_one = TreeSum(37)
    for k in rng.permutation(37):
        one_by_one.add(0, int(k), leaves[k])
    np.testing.assert_array_equal(one_by_one.root(), whole.root())
