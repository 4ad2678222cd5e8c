"""Checkpoint and resume (issue 5, item 3): SIGKILL at random moments never corrupts the output."""
import hashlib
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from sgdsim import sim
from sgdsim.sim._checkpoint import PARTS_SUFFIX
from sgdsim.sim._runfile import Piece
from tests._campaign import assert_same_datasets, f2_sweep, sgdsim, to_toml
from tests.conftest import ROOT


_ADD_CHUNK = Piece.add_chunk


def _resolved(raw):
    return sim.resolve_experiment(raw, "test.toml")


def _check_output_path(path):
    """Nothing, or a valid sgdsim run file (a checkpoint manifest or the complete run)."""
    if not os.path.exists(path):
        return None
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "sgdsim-run"
        assert f.attrs["format_version"] == 2
        assert "experiment" in f.attrs
        complete = bool(f.attrs["complete"])
        if not complete:
            assert "checkpoint" in f
        return complete


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _identity(path):
    try:
        st = os.stat(path)
        return st.st_ino, st.st_mtime_ns
    except FileNotFoundError:
        return None


def _wait_for_checkpoints(proc, path, count, timeout=120):
    """Wait until the manifest at ``path`` has been replaced ``count`` times (or proc ends)."""
    seen, changes = _identity(path), 0
    deadline = time.monotonic() + timeout
    while changes < count and proc.poll() is None and time.monotonic() < deadline:
        now = _identity(path)
        if now != seen:
            seen, changes = now, changes + 1
        time.sleep(0.001)


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    # 4 points x 16 chunks; a checkpoint after every chunk. Each session is killed after
    # 1-3 checkpoints plus a random fraction of a chunk, so ten kills cannot finish the run
    # however fast the machine; every third kill lands at a random moment of start-up.
    raw = f2_sweep(trajectories=4096, steps=1200, chunk=256, lrs=[0.02, 0.05, 0.08, 0.1])
    exp = tmp_path / "f2.toml"
    exp.write_text(to_toml(raw))
    reference = tmp_path / "reference.h5"
    sim.run_experiment(_resolved(raw), reference, quiet=True)  # default chunk, in process
    out = tmp_path / "out.h5"
    env = {"SGDSIM_CHECKPOINT_SECONDS": "0"}
    rng = np.random.default_rng(5)
    kills, sessions, startup = 0, 0, None
    while kills < 10:
        args = ["run", exp, "-o", out, "--quiet"] if sessions == 0 else ["resume", out, "--quiet"]
        sessions += 1
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "sgdsim.sim", *map(str, args)],
                                env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills % 3 == 2 and startup is not None:
            time.sleep(rng.uniform(0.0, startup))
        else:
            _wait_for_checkpoints(proc, out, int(rng.integers(1, 4)))
            if startup is None:
                startup = time.monotonic() - started
            time.sleep(rng.uniform(0.0, 0.02))
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode()
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        kills += 1
        _check_output_path(out)  # nothing, or a valid run file
    assert kills >= 10, f"the run finished after only {kills} kills"
    if _check_output_path(out) is not True:
        done = sgdsim("resume", out, "--quiet", env=env)
        assert done.returncode == 0, done.stderr
    assert _check_output_path(out) is True
    assert not os.path.exists(str(out) + PARTS_SUFFIX)
    assert_same_datasets(reference, out)
    with h5py.File(out, "r") as f:
        assert "checkpoint" not in f and f.attrs["complete"]

    # Resuming a complete file says so and changes nothing.
    digest = _digest(out)
    again = sgdsim("resume", out)
    assert again.returncode == 0
    assert "complete" in again.stderr
    assert _digest(out) == digest


def _fail_at_chunk(monkeypatch, call):
    """From now on, make the ``call``-th chunk fail as a node failure would."""
    calls = []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == call:
            raise RuntimeError("simulated node failure")
        return _ADD_CHUNK(self, *args)

    monkeypatch.setattr(Piece, "add_chunk", failing)


def _saved_chunks(path):
    """Chunks in the checkpoint at ``path`` (0 when nothing was written)."""
    if not os.path.exists(path):
        return 0
    with h5py.File(path, "r") as f:
        return int(f["checkpoint/parts"][-1, 1])


@pytest.mark.parametrize("key, env, flag, saved", [
    (0, None, None, 6),          # the key alone
    (3600, None, None, 0),
    (3600, "0", None, 6),        # the environment beats the key
    (0, "3600", None, 0),
    (3600, "3600", "0", 6),      # the flag beats both
    (0, "0", "3600", 0),
])
def test_checkpoint_interval_flag_then_environment_then_key(tmp_path, monkeypatch, key, env,
                                                            flag, saved):
    from sgdsim.sim._cli import main

    raw = f2_sweep(trajectories=1024, steps=30, chunk=256)
    raw["run"]["checkpoint_seconds"] = key
    exp, out = tmp_path / "f2.toml", tmp_path / "out.h5"
    exp.write_text(to_toml(raw))
    if env is None:
        monkeypatch.delenv("SGDSIM_CHECKPOINT_SECONDS", raising=False)
    else:
        monkeypatch.setenv("SGDSIM_CHECKPOINT_SECONDS", env)
    _fail_at_chunk(monkeypatch, 7)
    flags = ["--checkpoint-seconds", flag] if flag is not None else []
    assert main(["run", str(exp), "-o", str(out), "--quiet"] + flags) == 1  # the failure
    assert _saved_chunks(out) == saved  # with interval 0, the six chunks before it


def test_resume_takes_the_checkpoint_seconds_flag(tmp_path, monkeypatch):
    from sgdsim.sim._cli import main

    raw = f2_sweep(trajectories=1024, steps=30, chunk=256)
    exp, out = tmp_path / "f2.toml", tmp_path / "out.h5"
    exp.write_text(to_toml(raw))
    monkeypatch.setenv("SGDSIM_CHECKPOINT_SECONDS", "3600")
    _fail_at_chunk(monkeypatch, 7)
    assert main(["run", str(exp), "-o", str(out), "--quiet", "--checkpoint-seconds", "0"]) == 1
    assert _saved_chunks(out) == 6
    _fail_at_chunk(monkeypatch, 3)  # the stored key (0) loses to the environment (3600)
    assert main(["resume", str(out), "--quiet"]) == 1
    assert _saved_chunks(out) == 6
    _fail_at_chunk(monkeypatch, 3)  # the flag beats the environment
    assert main(["resume", str(out), "--quiet", "--checkpoint-seconds", "0"]) == 1
    assert _saved_chunks(out) == 8


def test_failure_mid_run_leaves_a_resumable_checkpoint(tmp_path, monkeypatch):
    raw = f2_sweep(trajectories=1024, steps=30, chunk=256)
    reference = tmp_path / "reference.h5"
    sim.run_experiment(_resolved(raw), reference, quiet=True)
    out = tmp_path / "out.h5"
    monkeypatch.setenv("SGDSIM_CHECKPOINT_SECONDS", "0")
    from sgdsim.sim import _runfile
    original = _runfile.Piece.add_chunk
    calls = []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("simulated node failure")
        return original(self, *args)

    monkeypatch.setattr(_runfile.Piece, "add_chunk", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        sim.run_experiment(_resolved(raw), out, quiet=True)
    assert _check_output_path(out) is False
    with h5py.File(out, "r") as f:
        assert f["checkpoint/parts"][-1, 1] == 6  # six chunks saved, one at a time
    monkeypatch.setattr(_runfile.Piece, "add_chunk", original)
    from sgdsim.sim._runner import resume_run
    resume_run(out, quiet=True)
    assert _check_output_path(out) is True
    assert_same_datasets(reference, out)


def test_sigterm_saves_a_checkpoint(tmp_path):
    raw = f2_sweep(trajectories=4096, steps=1500, chunk=256, lrs=[0.02, 0.05])
    exp = tmp_path / "f2.toml"
    exp.write_text(to_toml(raw))
    out = tmp_path / "out.h5"
    proc = subprocess.Popen([sys.executable, "-m", "sgdsim.sim", "run", str(exp), "-o", str(out),
                             "--quiet"], env=dict(os.environ, PYTHONPATH=str(ROOT),
                                                  SGDSIM_CHECKPOINT_SECONDS="0.2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # the first checkpoint: the run is under way
    if proc.poll() is not None:
        pytest.skip("run finished before SIGTERM")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "checkpoint saved" in stderr
    assert _check_output_path(out) is False
    done = sgdsim("resume", out, "--quiet")
    assert done.returncode == 0, done.stderr
    assert _check_output_path(out) is True


def test_resume_refuses_what_it_cannot_resume(tmp_path):
    missing = sgdsim("resume", tmp_path / "nothing.h5")
    assert missing.returncode == 2 and missing.stderr.startswith("error:")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    bad = sgdsim("resume", junk)
    assert bad.returncode == 2 and "junk.h5" in bad.stderr


def test_replacing_renames_a_finished_file_and_drops_a_failed_one(tmp_path):
    from sgdsim.sim._runfile import replacing

    path = tmp_path / "run.h5"
    with replacing(path) as f:
        f.attrs["version"] = 1
    with pytest.raises(RuntimeError, match="half written"):
        with replacing(path) as f:
            f.attrs["version"] = 2
            raise RuntimeError("half written")
    with h5py.File(path, "r") as f:
        assert f.attrs["version"] == 1
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]  # no temporary file left behind
