"""Problem and Assignment: validation messages, marginals, constructors, family round-trips."""

import math

import numpy as np
import pytest
import torch

from assignsolve import Assignment, InvalidProblemError, Problem


def scores(n=6, k=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, k))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "found neither"),
        (dict(scores=np.zeros(5)), "expected a 2-D array"),
        (dict(scores=np.zeros((0, 3))), "non-empty"),
        (dict(scores=np.ones((4, 3), dtype=np.int64)), "floating-point"),
        (dict(scores=np.array([[0.0, np.nan], [1.0, 2.0]])), "NaN/inf"),
        (dict(scores=np.array([[0.0, np.inf], [1.0, 2.0]])), "first at index (0, 1)"),
        (dict(scores=scores(), features=np.zeros((5, 2))), "expected 6 rows"),
        (dict(scores=scores(), a=np.ones(5) / 5), "a: expected shape (6,)"),
        (dict(scores=scores(), b=np.array([0.5, 0.7, -0.2])), "b[2] = -0.2"),
        (dict(scores=scores(), a=np.ones(6) / 6, b=np.ones(3)), "sum(b) = 3"),
        (dict(scores=scores(), n_clusters=4), "n_clusters: expected 3"),
        (dict(features=scores()), "n_clusters: expected an int"),
        (dict(features=scores(), n_clusters=0), "expected an int >= 1, found 0"),
        (dict(scores=scores(), paired_scores=scores(6, 2)), "paired_scores: expected shape (6, 3)"),
        (dict(scores=scores(), min_cluster_size=3), "infeasible"),
        (dict(scores=scores(), max_cluster_size=1), "infeasible"),
        (dict(features=scores(), n_clusters=2, init_centroids=np.zeros((3, 3))), "expected shape (2, 3)"),
    ],
)
def test_invalid_problems_name_the_value(kwargs, message):
    with pytest.raises(InvalidProblemError) as info:
        Problem(**kwargs)
    assert message in str(info.value)


def test_non_array_input_is_a_type_error():
    with pytest.raises(TypeError, match="expected a numpy.ndarray or torch.Tensor, found list"):
        Problem(scores=[[1.0, 2.0]])


def test_default_marginals_are_uniform_with_equal_mass():
    p = Problem(scores=scores(), a=np.full(6, 2.0))
    np.testing.assert_allclose(p.row_marginal().numpy(), np.full(6, 2.0))
    np.testing.assert_allclose(p.col_marginal().numpy(), np.full(3, 4.0))  # total mass 12 over 3
    q = Problem(scores=scores())
    np.testing.assert_allclose(q.row_marginal().numpy(), np.full(6, 1 / 6))
    np.testing.assert_allclose(q.col_marginal().numpy(), np.full(3, 1 / 3))


def test_numpy_is_kept_zero_copy_and_family_recorded():
    s = scores()
    p = Problem(scores=s)
    assert p.family.kind == "numpy" and p.family.dtype == torch.float64
    s[0, 0] = 123.0
    assert p.scores[0, 0].item() == 123.0  # shares memory, nothing copied


def test_from_logits_is_log_softmax():
    logits = scores()
    p = Problem.from_logits(logits)
    expected = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(p.scores.numpy(), expected, rtol=1e-12)
    assert p.family.kind == "numpy"


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_from_features_scores(metric):
    rng = np.random.default_rng(1)
    x, c = rng.normal(size=(7, 4)), rng.normal(size=(3, 4))
    p = Problem.from_features(x, c, metric=metric)
    if metric == "cosine":
        ref = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T
    elif metric == "dot":
        ref = x @ c.T
    else:
        ref = -((x[:, None] - c[None]) ** 2).sum(-1)
    np.testing.assert_allclose(p.scores.numpy(), ref, rtol=1e-9, atol=1e-9)
    assert p.features is not None and p.init_centroids.shape == (3, 4)


def test_from_features_rejects_bad_metric_and_shapes():
    with pytest.raises(InvalidProblemError, match="metric: expected"):
        Problem.from_features(np.ones((3, 2)), np.ones((2, 2)), metric="manhattan")
    with pytest.raises(InvalidProblemError, match="expected 2 columns like features, found 3"):
        Problem.from_features(np.ones((3, 2)), np.ones((2, 3)))


def test_assignment_views_and_family_round_trip():
    p = Problem(scores=torch.tensor(scores(), dtype=torch.float32))
    soft = torch.softmax(p.scores, 1)
    a = Assignment.for_problem(p, soft=soft, converged=False, errors=[0.5, 0.25], extras={"x": 1})
    assert isinstance(a.labels, torch.Tensor) and a.labels.dtype == torch.int64
    assert torch.equal(a.labels, soft.argmax(1))
    assert a.soft.dtype == torch.float32
    assert a.cluster_sizes.sum() == 6 and a.marginal_error == 0.25
    sizes = np.bincount(a.labels.numpy(), minlength=3) / 6
    nz = sizes[sizes > 0]
    assert math.isclose(a.size_entropy, float(-(nz * np.log(nz)).sum()))
    with pytest.raises(TypeError, match="does not support item assignment"):
        a.extras["y"] = 2  # read-only


def test_half_precision_scores_give_float32_soft():
    p = Problem(scores=torch.randn(5, 2).to(torch.bfloat16))
    a = Assignment.for_problem(p, soft=torch.full((5, 2), 0.5))
    assert a.soft.dtype == torch.float32
