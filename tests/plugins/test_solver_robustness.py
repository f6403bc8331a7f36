"""Issue 11, solver level: wrong answers without an error. One test per case."""

import warnings

import attrs
import numpy as np
import pytest
import torch

from assignsolve import (Assignment, BaseSolver, CollapsedWarning, InvalidProblemError,
                         NotConvergedWarning, Problem, get_solver)
from assignsolve.ops.ties import balanced_argmax
from assignsolve.core.guards import UnsupportedProblemError

RNG = np.random.default_rng(0)
N, K, D = 12, 3, 4
S = RNG.normal(size=(N, K))
X = np.concatenate([RNG.normal(size=(4, D)) + 6 * c for c in np.eye(K, D)])  # 3 separated groups


def quiet(solver, problem):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = solver(problem)
    return result, [w for w in caught if issubclass(w.category, NotConvergedWarning)]


# ---------------------------------------------------------------- values near the float range
def test_float64_beyond_float32_cast_is_refused_naming_the_value():
    with np.errstate(over="ignore"), pytest.raises(
            InvalidProblemError, match=r"scores: expected finite values, found 36 NaN/inf entries \(first at "
            r"index \(0, 0\): -?inf\); torch.float32 holds \|x\| <= 3.403e\+38: was it cast from a larger value\?"):
        Problem(scores=np.full((N, K), 1e39).astype(np.float32))
    big = np.full((K, D), 1e39)
    with pytest.raises(InvalidProblemError, match=r"init_centroids: expected \|values\| <= 3\.403e\+38.*found 1e\+39"):
        get_solver("kmeans")(Problem(features=X.astype(np.float32), n_clusters=K, init_centroids=big))
    with pytest.raises(InvalidProblemError, match=r"init_centroids: .*found 1e\+39"):
        get_solver("coke")(Problem(features=X.astype(np.float32), n_clusters=K, init_centroids=big))
    with pytest.raises(InvalidProblemError, match=r"paired_scores: expected \|values\| <= 3\.403e\+38 \(the torch.float32 range of the scores\), found 1e\+39"):
        get_solver("iic")(Problem(scores=S.astype(np.float32), paired_scores=np.full((N, K), 1e39)))
    with pytest.raises(InvalidProblemError, match=r"centroids: expected \|values\| <= 3\.403e\+38.*1e\+39"):
        Problem.from_features(X.astype(np.float32), big)


@pytest.mark.parametrize("scale", [1e30, 1e39, 1e150, 1e300])
def test_lp_huge_scores_give_the_unscaled_answer(scale):
    lp = get_solver("lp")
    ref = lp(Problem(scores=S))
    res = lp(Problem(scores=S * scale))
    assert res.converged
    np.testing.assert_array_equal(res.labels, ref.labels)
    np.testing.assert_allclose(res.soft, ref.soft, atol=1e-9)
    assert res.objective == pytest.approx(ref.objective * scale, rel=1e-9)


def test_lp_backend_failure_is_an_assignsolve_error_not_a_cvxpy_valueerror():
    from assignsolve_plugins.lp import LPSolverError, transport_lp

    a, b = np.full(N, 1 / N), np.full(K, 1 / K)
    with pytest.raises(LPSolverError, match=r"lp: the highs backend failed: "):  # HiGHS: costs >= 1e20 are infinite
        transport_lp(S * 1e30, a, b)


@pytest.mark.parametrize("dtype,scale", [(np.float32, 1e30), (np.float32, 1e-40), (np.float64, 1e150),
                                         (np.float64, 1e-300)])
def test_kmeans_rescales_huge_and_tiny_features_exactly(dtype, scale):
    km = get_solver("kmeans")
    ref = km(Problem(features=X.astype(dtype), n_clusters=K))
    res = km(Problem(features=(X * scale).astype(dtype), n_clusters=K))
    assert res.converged and res.n_empty == 0
    np.testing.assert_array_equal(res.labels, ref.labels)
    got = np.asarray(res.extras["centroids"], dtype=np.float64)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, np.asarray(ref.extras["centroids"], dtype=np.float64) * scale, rtol=1e-3)
    assert res.objective == pytest.approx(ref.objective * scale**2, rel=1e-3)


def test_kmeans_refuses_an_objective_beyond_float64():
    with pytest.raises(InvalidProblemError, match=r"features: expected squared distances within the float64 range"):
        get_solver("kmeans")(Problem(features=X * 1e300, n_clusters=K))


@pytest.mark.parametrize("dtype,scale", [(np.float32, 1e30), (np.float32, 1e-40), (np.float64, 1e300)])
def test_coke_unit_rows_survive_huge_and_tiny_features(dtype, scale):
    coke = get_solver("coke")
    ref = coke(Problem(features=X.astype(dtype), n_clusters=K))
    res = coke(Problem(features=(X * scale).astype(dtype), n_clusters=K))
    np.testing.assert_array_equal(res.labels, ref.labels)
    assert res.converged == ref.converged and np.isfinite(res.soft).all()


def test_sinkhorn_pot_refuses_a_spread_beyond_float64():
    with pytest.raises(InvalidProblemError, match=r"sinkhorn-pot: expected a finite score spread"):
        get_solver("sinkhorn-pot")(Problem(scores=np.array([[1e308, -1e308], [0.0, 1.0]])))
    with pytest.raises(InvalidProblemError, match=r"\(max S - min S\) / epsilon, epsilon = 1e-10"):
        get_solver("sinkhorn-pot", epsilon=1e-10)(Problem(scores=np.array([[1e300, 0.0], [0.0, 1.0]])))


def test_problem_refuses_a_total_mass_beyond_float64():
    with pytest.raises(InvalidProblemError, match=r"a: expected a positive, finite total mass, found inf"):
        Problem(scores=S, a=np.full(N, 1e308))


# ---------------------------------------------------------------- constraints not silently ignored
@pytest.mark.parametrize("name", ["sinkhorn-pot", "kmeans", "iic"])
@pytest.mark.parametrize("bound", ["min_cluster_size", "max_cluster_size"])
def test_size_bounds_are_refused_not_ignored(name, bound):
    with pytest.raises(UnsupportedProblemError, match=rf"{name}: cannot honour {bound} = 4 and will not ignore it"):
        get_solver(name)(Problem(scores=S, features=X, **{bound: 4}))


def test_coke_refuses_max_size_and_weighted_a_but_honours_b():
    with pytest.raises(UnsupportedProblemError, match=r"coke: cannot honour max_cluster_size = 4"):
        get_solver("coke")(Problem(features=X, n_clusters=K, max_cluster_size=4))
    a = np.r_[np.zeros(3), np.full(N - 3, 1 / (N - 3))]
    with pytest.raises(UnsupportedProblemError, match=r"coke: cannot honour a non-uniform a \(min 0, max 0\.1111\)"):
        get_solver("coke")(Problem(features=X, n_clusters=K, a=a))
    res = get_solver("coke")(Problem(features=X, n_clusters=K, b=np.array([0.5, 0.5, 0.0])))
    assert res.extras["lower_bound"] == pytest.approx([0.4 * 0.5 * N, 0.4 * 0.5 * N, 0.0])


@pytest.mark.parametrize("name", ["kmeans", "iic"])
@pytest.mark.parametrize("which", ["a", "b"])
def test_non_uniform_marginals_are_refused_uniform_ones_accepted(name, which):
    length = N if which == "a" else K
    w = np.arange(1.0, length + 1)
    with pytest.raises(UnsupportedProblemError, match=rf"{name}: cannot honour a non-uniform {which}"):
        get_solver(name)(Problem(scores=S, features=X, **{which: w / w.sum()}))
    res = get_solver(name)(Problem(scores=S, features=X, **{which: np.full(length, 1 / length)}))
    assert res.labels.shape == (N,)


def test_coke_hard_min_size_unmet_is_not_converged():
    x = np.concatenate([X, np.repeat(X[:1], 12, axis=0)])  # 24 samples, 16 near one group
    res, warned = quiet(get_solver("coke", gamma=0.0), Problem(features=x, n_clusters=K, min_cluster_size=8))
    if res.cluster_sizes.min() < 8:
        assert not res.converged and warned
        assert "below min_cluster_size = 8" in str(warned[0].message)


# ---------------------------------------------------------------- identical rows
def test_identical_rows_sinkhorn_pot_and_lp_balance_exactly():
    for name in ("sinkhorn-pot", "lp"):
        res, warned = quiet(get_solver(name), Problem(scores=np.repeat(S[:1], N, axis=0)))
        assert res.converged and not warned, name
        assert res.cluster_sizes.tolist() == [4, 4, 4], name
        np.testing.assert_allclose(res.soft.sum(0), [4, 4, 4], atol=1e-5)


@pytest.mark.parametrize("name,says", [("kmeans", "clusters empty at the end"),
                                       ("coke", "not converged after"),
                                       ("iic", "every one of the N = 12 samples went to cluster")])
def test_identical_rows_are_reported_not_converged(name, says):
    problem = Problem(scores=np.repeat(S[:1], N, axis=0), features=np.repeat(X[:1], N, axis=0))
    res, warned = quiet(get_solver(name), problem)
    assert not res.converged and len(warned) == 1, name
    assert says in str(warned[0].message)
    assert (name == "iic") == issubclass(warned[0].category, CollapsedWarning)


def test_kmeans_empty_clusters_left_say_so():
    res, warned = quiet(get_solver("kmeans"), Problem(features=np.repeat(X[:1], N, axis=0), n_clusters=K))
    assert not res.converged and res.extras["n_empty"] == 2
    assert str(warned[0].message) == "kmeans: not converged: 2 of 3 clusters empty at the end (fewer than K distinct points?)"


def test_iic_constant_scores_tie_and_spread_evenly():
    res = get_solver("iic")(Problem(scores=np.zeros((N, K))))
    assert res.converged and res.cluster_sizes.tolist() == [4, 4, 4]


@attrs.frozen
class _AllInZero(BaseSolver):
    """Puts every sample in cluster 0."""

    name = "all-in-zero"

    def solve(self, problem):
        return Assignment.for_problem(problem, labels=torch.zeros(problem.n_samples, dtype=torch.int64))


def test_base_solver_reports_collapse():
    with pytest.warns(CollapsedWarning, match=r"all-in-zero: every one of the N = 12 samples went to cluster 0 of K = 3"):
        res = _AllInZero()(Problem(scores=S))
    assert not res.converged and res.extras["collapsed_to"] == 0
    # one cluster is the answer when b has one cluster of positive mass: no report
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _AllInZero()(Problem(scores=S, b=np.array([1.0, 0, 0]))).converged


def test_balanced_argmax_by_hand():
    soft = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.5, 0.5]])
    # row 3 is untied (cluster 0); ties go to the emptier cluster, first index on equal room
    assert balanced_argmax(soft, torch.tensor([0.5, 0.5])).tolist() == [1, 0, 1, 0, 0]
    assert balanced_argmax(soft, torch.tensor([0.2, 0.8])).tolist() == [1, 1, 1, 0, 1]


# ---------------------------------------------------------------- zero marginals
@pytest.mark.parametrize("name", ["sinkhorn-pot", "lp"])
def test_zero_b_entry_gets_no_mass_and_zero_a_rows_stay_finite(name):
    b = np.array([0.5, 0.5, 0.0])
    a = np.r_[np.zeros(2), np.full(N - 2, 1 / (N - 2))]
    res, _ = quiet(get_solver(name), Problem(scores=S, a=a, b=b))
    soft = np.asarray(res.soft)
    assert np.isfinite(soft).all() and np.allclose(soft.sum(1), 1)
    assert (np.asarray(res.labels) != 2).all() and soft[:, 2].max() < 1e-6
    np.testing.assert_allclose((a[:, None] * soft).sum(0), b, atol=1e-5)
