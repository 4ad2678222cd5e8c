"""Checkpoints that survive SIGKILL: a manifest at the output path, parts beside it.

While a run is unfinished the output path holds a small *manifest*: a valid
run file (format attributes, the resolved experiment, ``complete`` False) whose
``/checkpoint`` group records the chunk plan and the finished parts. Each part
(the results of consecutive chunks, see ``_runfile.Piece``) is a small HDF5
file in the sidecar folder ``OUT.h5.parts/``. Every file is written under a
temporary name, fsync'ed and renamed into place (``_runfile.replacing``), and
a part is written before the manifest that lists it, so a kill at any moment
leaves at the output path either nothing or a manifest whose parts are all
there. A chunk in progress (a long chunk runs in slices of steps, and a
checkpoint can come between two of them) is saved as ``partial-C-T.h5``: the
carried state of chunk C after step T (``_engine.state_arrays``), from which
``resume`` continues it bit for bit. When the last chunk is done, the parts are combined into the run file
(again temporary file, fsync, rename over the manifest) and the sidecar is
removed.
"""
import glob
import os
import sys
import time
import zlib

import h5py
import numpy as np

from ._runfile import read_piece, replacing, root_attrs, write_piece, write_run

__all__ = ["Checkpoint", "PARTS_SUFFIX"]

PARTS_SUFFIX = ".parts"


class Checkpoint:
    """The on-disk state of one run at ``out_path`` (fresh, or loaded for resume)."""

    def __init__(self, out_path, plan, device):
        self.out_path = os.fspath(out_path)
        self.parts_dir = self.out_path + PARTS_SUFFIX
        self.plan = plan
        self.device = device
        self.parts = []  # (c0, c1): chunks [c0, c1) of plan.chunks, in order
        self.partial = None  # (chunk, step) of the saved chunk in progress, or None
        self.crc = {}        # file name in the sidecar -> CRC-32 of its bytes
        self.earlier_wall = 0.0  # wall seconds of earlier sessions, up to their last save
        self.session_start = time.perf_counter()
        self.experiment_text = None

    @property
    def done(self):
        """Chunks already saved (a prefix of the plan)."""
        return self.parts[-1][1] if self.parts else 0

    def clear_stale(self):
        """Remove a sidecar and temporary files left by an earlier run at this path."""
        _remove_parts(self.parts_dir, keep=())
        for stale in glob.glob(os.path.join(os.path.dirname(os.path.abspath(self.out_path)),
                                            f".{glob.escape(os.path.basename(self.out_path))}"
                                            f".*.tmp")):
            _unlink(stale)

    def _part_path(self, c0, c1):
        return os.path.join(self.parts_dir, f"part-{c0:09d}-{c1:09d}.h5")

    def _partial_path(self, chunk, step):
        return os.path.join(self.parts_dir, f"partial-{chunk:09d}-{step:012d}.h5")

    def _wall(self):
        return self.earlier_wall + (time.perf_counter() - self.session_start)

    def save(self, piece, c0, c1, partial=None):
        """Make chunks [c0, c1) durable, and ``partial = (c1, state)``, the chunk in
        progress, if given: write the files, then the manifest listing them."""
        from ._engine import state_arrays

        if c0 != self.done:
            raise RuntimeError(f"checkpoint parts out of order ({c0} after {self.done})")
        os.makedirs(self.parts_dir, exist_ok=True)
        if c1 > c0:
            with replacing(self._part_path(c0, c1)) as f:
                write_piece(f, piece)
            self.parts.append((c0, c1))
            self.crc[os.path.basename(self._part_path(c0, c1))] = _crc(self._part_path(c0, c1))
        previous = self.partial
        self.partial = None
        if partial is not None:
            chunk, state = partial
            arrays, attrs = state_arrays(state)
            path = self._partial_path(chunk, state.t)
            with replacing(path) as f:
                for key, value in arrays.items():
                    f.create_dataset(key, data=value)
                f.attrs.update(attrs)
            self.partial = (chunk, state.t)
            self.crc[os.path.basename(path)] = _crc(path)
        self._write_manifest()
        if previous is not None and previous != self.partial:
            _unlink(self._partial_path(*previous))

    def load_partial(self):
        """The saved chunk in progress as (chunk, (arrays, attrs)), or None."""
        if self.partial is None:
            return None
        with h5py.File(self._partial_path(*self.partial), "r") as f:
            arrays = {}
            f.visititems(lambda key, obj: arrays.__setitem__(key, obj[()])
                         if isinstance(obj, h5py.Dataset) else None)
            attrs = dict(f.attrs)
        return self.partial[0], (arrays, attrs)

    def _write_manifest(self):
        plan = self.plan
        with replacing(self.out_path) as f:
            f.attrs.update(root_attrs(plan, self.device, False, wall_seconds=self._wall(),
                                      experiment_text=self.experiment_text))
            group = f.create_group("checkpoint")
            group.attrs["chunk"] = plan.chunk
            group.attrs["chunks"] = len(plan.chunks)
            group.attrs["parts_dir"] = os.path.basename(self.parts_dir)
            group.create_dataset("parts", data=np.array(self.parts, dtype=np.int64)
                                 .reshape(-1, 2))
            if self.partial is not None:
                group.attrs["partial"] = np.array(self.partial, dtype=np.int64)
            names = [os.path.basename(self._part_path(c0, c1)) for c0, c1 in self.parts]
            if self.partial is not None:
                names.append(os.path.basename(self._partial_path(*self.partial)))
            group.create_dataset("files", data=np.array(names, dtype=object),
                                 dtype=h5py.string_dtype())
            group.create_dataset("crc32", data=np.array([self.crc.get(n, 0) for n in names],
                                                        dtype=np.uint32))

    def finish(self, last_piece, c0):
        """Combine the saved parts and ``last_piece`` (chunks c0..end) into the run file."""
        plan = self.plan
        if c0 != self.done:
            raise RuntimeError(f"final piece starts at chunk {c0}, saved parts end at {self.done}")
        kernel_seconds = compile_seconds = 0.0

        def pieces():
            nonlocal kernel_seconds, compile_seconds
            for c_first, c_last in self.parts:
                with h5py.File(self._part_path(c_first, c_last), "r") as f:
                    piece = read_piece(f, plan)
                    kernel_seconds += piece.kernel_seconds
                    compile_seconds += piece.compile_seconds
                    yield piece
            kernel_seconds += last_piece.kernel_seconds
            compile_seconds += last_piece.compile_seconds
            yield last_piece

        with replacing(self.out_path) as f:
            write_run(f, plan, pieces())
            f.attrs.update(root_attrs(plan, self.device, True, kernel_seconds, compile_seconds,
                                      self._wall(), experiment_text=self.experiment_text))
        _remove_parts(self.parts_dir, keep=())

    @classmethod
    def load(cls, out_path, make_plan_from):
        """The checkpoint of an unfinished run file, or None when the file is complete.

        ``make_plan_from(attrs, chunk)`` rebuilds the plan from the manifest.
        """
        with h5py.File(out_path, "r") as f:
            attrs = dict(f.attrs)
            if bool(attrs.get("complete", False)):
                return None
            group = f["checkpoint"]
            chunk = int(group.attrs["chunk"])
            n_chunks = int(group.attrs["chunks"])
            parts = [tuple(int(v) for v in row) for row in group["parts"][()]]
            partial = (tuple(int(v) for v in group.attrs["partial"])
                       if "partial" in group.attrs else None)
            crc = {}
            if "files" in group and "crc32" in group:
                crc = {(n.decode() if isinstance(n, bytes) else str(n)): int(c)
                       for n, c in zip(group["files"][()], group["crc32"][()])}
        plan = make_plan_from(attrs, chunk)
        if len(plan.chunks) != n_chunks:
            raise RuntimeError(f"{out_path}: checkpoint plan has {n_chunks} chunks, "
                               f"rebuilt plan {len(plan.chunks)}")
        text = attrs["experiment"]
        ckpt = cls(out_path, plan, str(attrs.get("device", "")))
        ckpt.experiment_text = text.decode() if isinstance(text, bytes) else str(text)
        ckpt.parts = parts
        ckpt.partial = partial
        ckpt.crc = crc
        ckpt.earlier_wall = float(attrs.get("wall_seconds", 0.0))
        edge = 0
        for c0, c1 in parts:
            if c0 != edge or not os.path.isfile(ckpt._part_path(c0, c1)):
                raise FileNotFoundError(2, "checkpoint part missing", ckpt._part_path(c0, c1))
            edge = c1
        if partial is not None and (partial[0] != edge
                                    or not os.path.isfile(ckpt._partial_path(*partial))):
            raise FileNotFoundError(2, "checkpoint part missing", ckpt._partial_path(*partial))
        ckpt._drop_damaged()
        keep = {os.path.basename(ckpt._part_path(c0, c1)) for c0, c1 in ckpt.parts}
        if ckpt.partial is not None:
            keep.add(os.path.basename(ckpt._partial_path(*ckpt.partial)))
        _remove_parts(ckpt.parts_dir, keep)  # parts written after the last manifest
        return ckpt

    def _drop_damaged(self):
        """Check every saved file against its CRC-32 (and that HDF5 can open it) before any
        new work; from the first damaged one on, drop the files and say so on stderr, so
        that resume recomputes those chunks."""
        files = [(self._part_path(c0, c1), k) for k, (c0, c1) in enumerate(self.parts)]
        if self.partial is not None:
            files.append((self._partial_path(*self.partial), len(self.parts)))
        for path, index in files:
            problem = _damage(path, self.crc.get(os.path.basename(path)))
            if problem is None:
                continue
            kept = self.parts[:index]
            redo = self.parts[index][0] if index < len(self.parts) else self.partial[0]
            print(f"sgdsim: checkpoint file {path} is damaged ({problem}); chunks from "
                  f"{redo + 1} on are computed again", file=sys.stderr, flush=True)
            self.parts = kept
            self.partial = None
            return

    def remove_leftovers(self):
        """After a complete file was found: drop a sidecar a kill left behind."""
        _remove_parts(self.parts_dir, keep=())


def _crc(path):
    """CRC-32 of a file's bytes."""
    value = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            value = zlib.crc32(block, value)
    return value


def _damage(path, expected):
    """Why the checkpoint file at ``path`` cannot be used, or None when it is sound."""
    try:
        if expected is not None and _crc(path) != expected:
            return "CRC-32 differs from the manifest's"
        with h5py.File(path, "r") as f:
            f.visit(lambda name: None)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_parts(folder, keep):
    """Delete our own files (part-*.h5 and *.tmp) in the sidecar, then the folder if empty."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if name in keep:
            continue
        if (name.startswith(("part-", "partial-")) and name.endswith(".h5")) \
                or name.endswith(".tmp"):
            _unlink(os.path.join(folder, name))
    if not keep:
        try:
            os.rmdir(folder)
        except OSError:
            pass
