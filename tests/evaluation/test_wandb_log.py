"""W&B logging through the real wandb package in offline mode (no network)."""

from __future__ import annotations

import pytest

from assignsolve.evaluation.wandb_log import WandbLogger, numeric_items

wandb = pytest.importorskip("wandb")


def test_numeric_items_keep_finite_numbers_only():
    row = {"epoch": 3, "loss": 1.5, "pl_nonempty": 10, "note": "x", "nan": float("nan"), "flag": True}
    assert numeric_items(row) == {"loss": 1.5, "pl_nonempty": 10}


def test_offline_run_logs_rows_and_resumes_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = WandbLogger(tmp_path, {"solver": "sinkhorn-gpu", "epochs": 2})
    for epoch, nmi in [(0, 0.2), (1, 0.5)]:
        log.log({"epoch": epoch, "pl_nmi": nmi, "note": "ignored"})
    assert log.run.summary["pl_nmi"] == 0.5
    assert dict(log.run.config)["solver"] == "sinkhorn-gpu"
    first_id = log.run.id
    log.close()
    assert (tmp_path / "wandb-id.txt").read_text().strip() == first_id
    assert list((tmp_path / "wandb").glob(f"offline-run-*-{first_id}"))
    again = WandbLogger(tmp_path, {"solver": "sinkhorn-gpu", "epochs": 4})
    assert again.run.id == first_id
    again.close()
