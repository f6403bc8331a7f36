"""DDP: two gloo processes on CPU via ``torchrun --nproc_per_node 2`` on a tiny config.

Slow (``-m slow``, a separate step of ``.ci/run``): three interpreters start torch per test,
15-27 s each on 2 shared cores. The row sharding itself has default-set tests in one process
(``tests/plugins/test_sinkhorn_distributed.py``: a world of one through the distributed path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from assignsolve.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

ARGS = ["--limit", "64", "--epochs", "2", "--batch-size", "16", "--encoder-opt", "width=8",
        "--hidden-dim", "16", "--proj-dim", "8", "--n-clusters", "4", "--no-progress", "--device", "cpu"]


def _torchrun(tmp_path, *extra):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "assignsolve", "run", *ARGS, "--out", str(tmp_path), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.parametrize("solver,method", [("sinkhorn-pot", "swav"), ("kmeans", "deepcluster"), ("coke", "coke"),
                                           ("iic", "iic")])
def test_two_process_gloo_run_trains_and_checkpoints(tmp_path, solver, method):
    proc = _torchrun(tmp_path, "--solver", solver, "--method", method)
    text = proc.stdout
    result = json.loads(text[text.index("{"):])  # only rank 0 prints the result
    assert text.count('"recipe"') == 1
    assert result["epoch"] == 2 and result["recipe"] == method
    # each process took half of the 64 samples: 32 / 16 = 2 steps per epoch
    assert result["steps"] == 2
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["epoch"] == 2
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]


def test_two_process_checkpoint_resumes_in_one_process(tmp_path):
    """A DDP checkpoint holds the plain (unwrapped) model: a single process can continue it."""
    _torchrun(tmp_path, "--solver", "sinkhorn-pot", "--method", "sela")
    from assignsolve.train import TrainConfig, run

    cfg = TrainConfig(limit=64, epochs=3, batch_size=16, encoder_opt={"width": 8}, hidden_dim=16,
                      proj_dim=8, n_clusters=4, progress=False, device="cpu", solver="sinkhorn-pot",
                      method="sela", out=str(tmp_path), resume=True)
    result = run(cfg)
    assert result["epoch"] == 3 and [r["epoch"] for r in result["history"]] == [0, 1, 2, 3]
