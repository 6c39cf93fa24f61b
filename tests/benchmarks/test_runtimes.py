"""benchmarks/runtimes.py's InternVideo2 proxy: N of the 1B tower's 40 blocks, and the FLOPs it counts.

Built on the meta device: the shapes and the block count are what matter, not 1.3 GB of weights.
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vidsearch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import runtimes  # noqa: E402

FULL_GFLOP = 2315  # the whole 1B vision tower, per clip (docs/benchmarks.md)


def proxy(layers: int) -> runtimes.InternVideo2:
    with torch.device("meta"):
        return runtimes.internvideo2_model(layers)


def test_the_proxy_keeps_n_blocks_of_the_full_width_and_each_costs_the_same() -> None:
    two, three, full = proxy(2), proxy(3), proxy(0)
    assert [len(m.vision_encoder.blocks) for m in (two, three, full)] == [2, 3, 40]
    assert two.config.vision_width == full.config.vision_width == 1408
    macs = {n: runtimes.internvideo2_vision_macs(m.config) for n, m in ((2, two), (3, three), (40, full))}
    block = macs[3] - macs[2]
    assert 2 * block / 1e9 == pytest.approx(57.6, abs=0.05)
    assert macs[40] == pytest.approx(macs[2] + 38 * block)
    assert round(2 * macs[40] / 1e9) == FULL_GFLOP


@pytest.mark.parametrize("layers", [-1, 41])
def test_a_block_count_the_tower_does_not_have_is_refused(layers: int) -> None:
    with pytest.raises(ConfigError, match="--layers"):
        runtimes.internvideo2_model(layers)


def test_layers_without_internvideo2_is_a_usage_error() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "runtimes.py"), "--layers", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--layers and --opset go with --internvideo2" in done.stderr


def test_each_run_is_set_against_the_faster_peak_probe_beside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # before/after each of three runs: (FLOP per wall second, per CPU second)
    probes = iter([(p, 2 * p) for p in (100e9, 200e9, 50e9, 50e9, 400e9, 100e9)])

    def run() -> None:
        time.sleep(0.02)

    monkeypatch.setattr(runtimes, "probe_peak", lambda: next(probes))
    row = runtimes.paired("sleep", run, flops=1e9, runs=3, peak=1e12)
    seconds = row.latency_ms / 1e3
    assert 0.02 <= seconds < 0.5
    # the runs' FLOP/s over 200, 50 and 400 GFLOP/s: the median is the run paired with 200
    assert row.paired_peak_fraction == pytest.approx(1e9 / seconds / 200e9, rel=0.5)
    assert row.peak_fraction == pytest.approx(1e9 / seconds / 1e12)
    # a sleeping run uses almost no CPU: per CPU second it looks far faster than any probe
    assert row.cpu_peak_fraction is not None
    assert row.cpu_peak_fraction > row.paired_peak_fraction
