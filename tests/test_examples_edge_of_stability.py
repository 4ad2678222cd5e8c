"""The edge-of-stability, catapult, orbit and optimiser examples run (their quick modes) and
meet what their scripts check (exit status 0) and print."""
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"


def _run(script, tmp_path):
    png = tmp_path / "figure.png"
    result = subprocess.run([sys.executable, str(script), "--quick", "--outdir", str(tmp_path),
                             "--png", str(png)], capture_output=True, text=True, timeout=900)
    return result, png


@pytest.mark.slow  # about 35 s with its compiles; tests/test_sharpness.py checks the window
def test_catapult_window_of_gd_on_uv(tmp_path):
    result, png = _run(EXAMPLES / "catapults" / "plot_catapults.py", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert png.stat().st_size > 10_000
    rows = {float(m.group(1)): m.group(0) for m in
            re.finditer(r"^\s*([\d.]+)\s+([\d.]+) \[", result.stdout, re.M)}
    assert {0.2, 0.8, 1.6} <= set(rows)
    fraction = {lr: float(line.split()[1]) for lr, line in rows.items()}
    assert fraction[0.2] == 1.0 and fraction[0.8] == 1.0 and fraction[1.6] == 0.0


@pytest.mark.slow  # about 45 s: three step sizes x 3000 steps of a 16-coordinate network
def test_edge_of_stability_settles_at_two_over_lr(tmp_path):
    result, png = _run(EXAMPLES / "edge_of_stability" / "plot_eos.py", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    ratios = [float(x) for x in re.findall(r"= ([\d.]+) \(95 %", result.stdout)]
    assert len(ratios) == 3 and all(abs(r - 1.0) < 0.05 for r in ratios)


@pytest.mark.slow  # about 70 s: six optimisers, one run each
def test_optimisers_example_runs(tmp_path):
    script = EXAMPLES / "optimisers" / "compare.py"
    result = subprocess.run([sys.executable, str(script), "--quick", "--outdir", str(tmp_path),
                             "--png", str(tmp_path / "o.png")], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(re.findall(r"excess loss [\d.]+ \+- ", result.stdout)) == 6


@pytest.mark.slow  # about 40 s: 41 step sizes x 8000 steps; tests/test_period.py checks GD
def test_orbits_of_gd_on_uv_double_into_chaos(tmp_path):
    result, png = _run(EXAMPLES / "catapults" / "plot_orbits.py", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert png.stat().st_size > 10_000
    rows = {float(m.group(1)): m.group(2) for m in
            re.finditer(r"^\s*(1\.\d\d)\s+(\S+)", result.stdout, re.M)}
    assert rows[1.1] == "2" and rows[1.26] == "4" and rows[1.33] == "none"


@pytest.mark.slow  # about 15 s: five optimisers on four datasets
def test_generalisation_example_puts_sgd_at_the_minimum_norm_interpolant(tmp_path):
    result, png = _run(EXAMPLES / "optimisers" / "generalisation.py", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert png.stat().st_size > 10_000
    assert len(re.findall(r"minus sgd: [-+][\d.]+ \+- ", result.stdout)) == 4
