"""Compile the CUDA chunk kernels for real GPU targets without a GPU, and read ptxas' figures.

numba-cuda's ``compile_ptx`` needs only libNVVM, but a device function that a
kernel calls is compiled for "the current device", which asks the driver for
its compute capability. ``compile_kernel_ptx`` answers that question with the
target's capability for the duration of the compile, so every kernel variant
can be compiled, assembled by ``ptxas`` and inspected on a machine with no
driver (a laptop, CI). The PTX is what numba-cuda would build for that target
on a GPU; nothing is launched.
"""
import contextlib
import os
import pathlib
import re
import shutil
import subprocess
import time
from types import SimpleNamespace

import numba

__all__ = ["compile_kernel_ptx", "assemble", "find_ptxas", "find_nvdisasm", "occupancy",
           "step_loop_instructions", "PtxasFigures"]


@contextlib.contextmanager
def _target_device(cc):
    from numba.cuda import dispatcher

    real = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = real


def compile_kernel_ptx(kernel, args, cc):
    """PTX text of the CUDA dispatcher ``kernel`` for launch arguments ``args`` and ``cc``.

    The signature is the numba types of ``args`` (numpy arrays type as the
    device arrays the launcher passes). Returns (ptx, seconds).
    """
    from numba import cuda

    signature = tuple(numba.typeof(a) for a in args)
    start = time.perf_counter()
    with _target_device(cc):
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc, **_options(kernel))
    return ptx, time.perf_counter() - start


def _options(kernel):
    options = getattr(kernel, "targetoptions", {})
    return {k: options[k] for k in ("fastmath", "lineinfo", "debug", "launch_bounds")
            if options.get(k)}


def _nvidia_tool(name):
    """Path of the CUDA tool ``name`` from an NVIDIA wheel, else on PATH, else None."""
    try:
        import nvidia
    except ImportError:
        return shutil.which(name)
    for root in nvidia.__path__:
        for candidate in sorted(pathlib.Path(root).glob(f"*/bin/{name}")):
            return str(candidate)
    return shutil.which(name)


def find_ptxas():
    """Path of ``ptxas``: from the NVIDIA compiler wheels, else on PATH, else None.

    The CUDA 12 wheel (nvidia-cuda-nvcc-cu12) installs ``nvidia/cuda_nvcc/bin/ptxas``,
    the CUDA 13 one ``nvidia/cu13/bin/ptxas``.
    """
    return _nvidia_tool("ptxas")


def find_nvdisasm():
    """Path of ``nvdisasm``: from the nvidia-cuda-nvdisasm wheel, else on PATH, else None."""
    return _nvidia_tool("nvdisasm")


_SASS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")
_TARGET = re.compile(r"`\(\.L_x_(\d+)\)")
_LABEL = re.compile(r"^\.L_x_(\d+):")


# The multipliers of a Philox round (0xD2511F53, 0xCD9E8D57) as nvdisasm prints them.
_PHILOX = re.compile(r"(-0x2daee0ad|0xd2511f53|-0x326172a9|0xcd9e8d57)\b", re.IGNORECASE)


def step_loop_instructions(cubin, nvdisasm=None, group=1):
    """SASS instructions of the kernel's step loop, or None without nvdisasm.

    Returns (body, draw, per_step). The step loop is the longest backward branch
    of the kernel (the time loop encloses every other loop of the kernel body);
    ``body`` counts every instruction between the loop's head and its backward
    branch, so it bounds the instructions a step issues from above (branches not
    taken included). ``draw`` is the smallest forward-branch region of the loop
    holding all its Philox rounds: the group's draw, which runs once in ``group``
    steps (kernels._dynamics, the counter layout); ``per_step`` = body - draw +
    draw / group, rounded.
    """
    nvdisasm = nvdisasm or find_nvdisasm()
    if nvdisasm is None:
        return None
    text = subprocess.run([nvdisasm, "-c", os.fspath(cubin)], capture_output=True,
                          text=True, check=True).stdout
    labels, instructions = {}, []
    for line in text.splitlines():
        line = line.strip()
        label = _LABEL.match(line)
        if label:
            labels[label.group(1)] = len(instructions)
            continue
        match = _SASS.search(line)
        if match:
            instructions.append(match.group(2))
    head, tail = 0, -1
    branches = []
    for index, instruction in enumerate(instructions):
        target = _TARGET.search(instruction)
        if "BRA" in instruction and target:
            goal = labels.get(target.group(1), index)
            branches.append((index, goal))
            if goal < index and index - goal > tail - head:
                head, tail = goal, index
    body = tail - head + 1
    rounds = [i for i in range(head, tail + 1) if _PHILOX.search(instructions[i])]
    draw = 0
    if rounds and group > 1:
        regions = [goal - index - 1 for index, goal in branches
                   if head <= index < rounds[0] and rounds[-1] < goal <= tail]
        draw = min(regions, default=0)
    return body, draw, round(body - draw + draw / group)


class PtxasFigures(SimpleNamespace):
    """Registers per thread, stack frame, spills and shared memory of one kernel."""


_USED = re.compile(r"Used (\d+) registers")
_SHARED = re.compile(r"(\d+) bytes smem")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def assemble(ptx_path, cc, ptxas=None):
    """Assemble ``ptx_path`` with ``ptxas -arch=sm_XY -v``; return PtxasFigures.

    Raises RuntimeError with ptxas' own message when assembly fails.
    """
    ptxas = ptxas or find_ptxas()
    if ptxas is None:
        raise RuntimeError("ptxas not found: install the cuda extra (nvidia-cuda-nvcc-cu12)")
    arch = f"sm_{cc[0]}{cc[1]}"
    cubin = os.fspath(ptx_path) + ".cubin"
    result = subprocess.run([ptxas, f"-arch={arch}", "-v", os.fspath(ptx_path), "-o", cubin],
                            capture_output=True, text=True)
    text = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"ptxas -arch={arch}: " + " ".join(text.split())[:400])
    used, frame = _USED.search(text), _FRAME.search(text)
    if used is None or frame is None:
        raise RuntimeError(f"ptxas -arch={arch}: no resource usage in its output")
    shared = _SHARED.search(text)
    return PtxasFigures(registers=int(used.group(1)), shared_bytes=int(shared.group(1)) if shared else 0,
                        stack_bytes=int(frame.group(1)), spill_stores=int(frame.group(2)),
                        spill_loads=int(frame.group(3)), cubin=cubin)


# Per-SM limits of the CUDA occupancy calculator (CUDA C Programming Guide, table of
# technical specifications per compute capability).
_SM_LIMITS = {
    # cc: (max warps, max blocks, registers, shared bytes, reserved shared per block)
    (7, 0): (64, 32, 65536, 98304, 0),
    (7, 5): (32, 16, 65536, 65536, 0),
    (8, 0): (64, 32, 65536, 167936, 1024),
    (8, 6): (48, 16, 65536, 102400, 1024),
    (8, 9): (48, 24, 65536, 102400, 1024),
    (9, 0): (64, 32, 65536, 233472, 1024),
}
_REGISTER_UNIT = 256     # registers are allocated per warp in units of 256


def occupancy(cc, registers, shared_bytes, block_size):
    """Theoretical occupancy (active warps / maximum warps per SM) of a launch.

    Limited by registers (allocated per warp in units of 256), shared memory
    per block (plus the 1 KiB the runtime reserves from cc 8.0 on), the block
    count and the warp count per SM. None for a capability not in the table.
    """
    if cc not in _SM_LIMITS:
        return None
    max_warps, max_blocks, max_registers, max_shared, reserved = _SM_LIMITS[cc]
    warps = -(-block_size // 32)
    per_warp = -(-max(registers, 1) * 32 // _REGISTER_UNIT) * _REGISTER_UNIT
    by_registers = (max_registers // per_warp) // warps
    by_shared = max_shared // (shared_bytes + reserved) if shared_bytes + reserved else max_blocks
    blocks = min(max_blocks, max_warps // warps, by_registers, by_shared)
    return blocks * warps / max_warps
