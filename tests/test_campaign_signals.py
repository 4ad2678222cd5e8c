"""SIGTERM and SIGINT inside a long single-chunk run: a checkpoint within seconds, and a
resume that finishes bit-identical to an uninterrupted run."""
import signal
import subprocess
import sys
import time

import h5py
import pytest

from tests._campaign import assert_same_datasets, f2_sweep, sgdsim, to_toml
from tests.conftest import ROOT


def long_single_chunk():
    # One point, one chunk (1024 trajectories), 300000 steps: a few seconds of kernel.
    experiment = f2_sweep(trajectories=1024, steps=300000, lrs=[0.05])
    experiment["sweep"] = {}
    experiment["observables"].pop("paths")
    experiment["observables"]["loss_min"] = {}
    return experiment


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signals")
    (folder / "exp.toml").write_text(to_toml(long_single_chunk()))
    result = sgdsim("run", folder / "exp.toml", "--out", folder / "whole.h5", "--quiet")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_inside_a_chunk_saves_and_resumes_bit_identical(uninterrupted, tmp_path,
                                                                signum):
    out = tmp_path / "run.h5"
    process = subprocess.Popen(
        [sys.executable, "-m", "sgdsim.sim", "run", str(uninterrupted / "exp.toml"), "--out", str(out)],
        stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    # The first progress line comes after the first slice of steps, inside the chunk.
    line = process.stderr.readline()
    assert "done" in line, line
    process.send_signal(signum)
    sent = time.perf_counter()
    rest = process.communicate(timeout=60)[1]
    assert time.perf_counter() - sent < 10
    assert process.returncode == 130, rest
    assert "checkpoint saved" in rest
    with h5py.File(out, "r") as f:
        assert not f.attrs["complete"]
        step = int(f["checkpoint"].attrs["partial"][1])
    assert 0 < step < 300000
    resumed = sgdsim("resume", out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {step}/300000" in resumed.stderr
    assert_same_datasets(out, uninterrupted / "whole.h5")


def _manifest_parts(path):
    try:
        with h5py.File(path, "r") as f:
            return len(f["checkpoint/parts"][()])
    except (OSError, KeyError):
        return 0


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_part_is_found_before_any_work_and_recomputed(tmp_path, damage):
    experiment = f2_sweep(trajectories=2048, steps=20000, lrs=[0.05], chunk=256)
    experiment["sweep"] = {}
    (tmp_path / "exp.toml").write_text(to_toml(experiment))
    whole = sgdsim("run", tmp_path / "exp.toml", "--out", tmp_path / "whole.h5", "--quiet")
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "run.h5"
    process = subprocess.Popen(
        [sys.executable, "-m", "sgdsim.sim", "run", str(tmp_path / "exp.toml"), "--out", str(out),
         "--quiet", "--checkpoint-seconds", "0"], stderr=subprocess.PIPE, text=True,
        cwd=str(ROOT))
    deadline = time.time() + 120
    while _manifest_parts(out) < 3 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 130
    parts = sorted((tmp_path / "run.h5.parts").glob("part-*.h5"))
    assert len(parts) >= 2
    victim = parts[1]
    data = bytearray(victim.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    resumed = sgdsim("resume", out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint file {victim} is damaged" in resumed.stderr
    assert "chunks from 2 on are computed again" in resumed.stderr
    assert_same_datasets(out, tmp_path / "whole.h5")
