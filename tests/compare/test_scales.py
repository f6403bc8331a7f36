"""Scale-aware defaults, neighbour views, collapse detection, ranking and repeats of ``compare``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from assignsolve.compare.protocol import collapse_reason, run_protocol
from assignsolve.compare.scales import neighbour_pairs, scale_options, score_spread
from assignsolve.compare.summary import aggregate, ranked
from assignsolve.registry.manager import get_solver, solver_entry


def blobs(n_per=60, k=3, d=5, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d))
    y = np.repeat(np.arange(k), n_per)
    x = centres[y] + scale * rng.normal(size=(len(y), d))
    return x.astype(np.float32), y


def test_score_spread_is_std_of_hand_computed_cosines():
    x, _ = blobs()
    c = x[[0, 70, 150]]
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    assert score_spread(x, c, "cosine") == pytest.approx(float((xn @ cn.T).astype(np.float64).std()), rel=1e-5)


def test_neighbour_pairs_are_among_the_k_nearest_never_self_and_seeded():
    x, _ = blobs(n_per=50, d=6, seed=4)
    pairs = neighbour_pairs(x, 5, seed=3, block=37)  # blocks do not change the answer
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    nn = NearestNeighbors(n_neighbors=6, metric="cosine").fit(xn)
    _, idx = nn.kneighbors(xn)
    for i, j in enumerate(pairs):
        assert j != i and j in set(idx[i, 1:6])
    np.testing.assert_array_equal(pairs, neighbour_pairs(x, 5, seed=3))
    assert not np.array_equal(pairs, neighbour_pairs(x, 5, seed=4))


def test_scale_options_epsilon_relative_user_value_kept_and_tau_for_iic():
    pot, iic, km = (solver_entry(s) for s in ("sinkhorn-pot", "iic", "kmeans"))
    extra, scale = scale_options(pot, {"epsilon", "tol"}, {}, 0.2, 0.1, 0.1)
    assert extra == {"epsilon": pytest.approx(0.02)} and scale["rule"] == "0.1 x std(S0)"
    extra, scale = scale_options(pot, {"epsilon"}, {"epsilon": 0.05}, 0.2, 0.1, 0.1)
    assert extra == {} and scale == {"epsilon": 0.05, "rule": "user"}
    assert scale_options(iic, {"lamb", "device"}, {}, 0.3, 0.1, 0.5)[1]["tau"] == pytest.approx(0.15)
    assert scale_options(km, {"max_iter"}, {}, 0.3, 0.1, 0.1) == ({}, {})


def test_collapse_reasons():
    k, n = 4, 40
    labels = torch.arange(n) % k
    assert collapse_reason(labels, torch.nn.functional.one_hot(labels, k).float(), k) == ""
    flat = torch.full((n, k), 1.0 / k) + 1e-4 * torch.rand(n, k, generator=torch.Generator().manual_seed(0))
    assert collapse_reason(labels, flat, k).startswith("uninformative plan")
    big = labels.clone()
    big[:30] = 0
    assert collapse_reason(big, torch.nn.functional.one_hot(big, k).float(), k) == "one cluster holds 32 of 40 samples"  # 30 + the 2 zeros among 30..39


def _iic_run(x, tau, pair):
    c0 = torch.from_numpy(x[[0, 70, 150]].copy())
    return run_protocol(get_solver("iic"), "scores", torch.from_numpy(x), c0, 10, tau=tau, pair=pair)


def test_iic_with_neighbour_views_clusters_blobs_and_plain_iic_collapse_is_reported():
    x, y = blobs(n_per=60, k=3, d=5, seed=1)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    c0 = x[[0, 70, 150]]
    spread = score_spread(x, c0, "cosine")
    out = _iic_run(x, 0.1 * spread, torch.from_numpy(neighbour_pairs(x, 10, 0)))
    from sklearn.metrics import adjusted_rand_score
    assert out["collapse"] == "" and out["converged"] and adjusted_rand_score(y, out["labels"]) > 0.9
    plain = _iic_run(x, 100.0, None)  # softmax of cosines / 100: flat, labels from tie-breaking
    assert plain["collapse"].startswith("uninformative plan") and plain["converged"] is False


def test_ranked_sorts_by_accuracy_marks_best_failed_last():
    rows = [{"solver": "a", "status": "ok", "acc": 0.5}, {"solver": "b", "status": "failed", "reason": "x"},
            {"solver": "c", "status": "ok", "acc": 0.9}]
    out = ranked(rows, has_labels=True)
    assert [r["solver"] for r in out] == ["c", "a", "b"] and [r["best"] for r in out] == ["*", "", ""]
    rows = [{"solver": "a", "status": "ok", "objective": 2.0}, {"solver": "c", "status": "ok", "objective": 1.0}]
    assert ranked(rows, has_labels=False)[0]["solver"] == "a"


class _Res:
    def __init__(self, rows):
        self.rows = rows

    def row(self, s):
        return next(r for r in self.rows if r["solver"] == s)


def test_aggregate_mean_and_population_std_over_repeats():
    runs = [_Res([{"solver": "a", "status": "ok", "acc": a, "seconds": s, "converged": True, "collapse": ""}])
            for a, s in ((0.8, 1.0), (0.9, 3.0), (0.7, 2.0))]
    row = aggregate(runs)[0]
    assert row["acc"] == pytest.approx((0.8, np.std([0.8, 0.9, 0.7])))
    assert row["seconds"] == pytest.approx((2.0, np.std([1.0, 3.0, 2.0]))) and row["status"] == "ok"
    runs[1].rows[0]["status"] = "failed"
    assert aggregate(runs)[0]["status"] == "ok 2/3"
