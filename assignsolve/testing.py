"""A conformance suite any solver (built-in or third-party) can run on itself.

Usage in a plugin's own tests::

    from assignsolve.testing import CHECKS, run_conformance
    from my_plugin import MySolver

    def test_conformance():
        run_conformance(MySolver())

or one pytest case per check::

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_each(check):
        check(MySolver())

Each check builds small problems (N = 60 samples, K = 4 clusters, D = 5 features, from a
Gaussian mixture) carrying scores, features and a second view, so solvers of every kind
("scores", "features", "scores_or_features") find what they need. A check raises
``AssertionError`` naming the solver and what was wrong, or ``unittest.SkipTest`` when it
does not apply (e.g. no CUDA device).
"""

from __future__ import annotations

import unittest
import warnings
from collections.abc import Callable

import numpy as np
import torch

from .core.assignment import Assignment
from .core.errors import InvalidProblemError, NotConvergedWarning
from .core.problem import Problem

__all__ = ["CHECKS", "make_problem", "run_conformance"]

N, K, D = 60, 4, 5


def make_problem(kind: str = "torch", dtype=torch.float32, n: int = N, k: int = K, d: int = D,
                 seed: int = 0, device: str = "cpu") -> Problem:
    """A well-posed problem from a K-component Gaussian mixture (scores are log-softmax)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d))
    truth = np.arange(n) % k
    x = centres[truth] + rng.normal(size=(n, d))
    x2 = x + 0.3 * rng.normal(size=(n, d))

    def logits(z):
        return -((z[:, None, :] - centres[None]) ** 2).sum(-1) / 4.0

    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    arrays = dict(scores=log_softmax(logits(x)), features=x, paired_scores=log_softmax(logits(x2)))
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype if dtype in (torch.float32, torch.float64) else np.float32
    if kind == "numpy":
        arrays = {name: a.astype(np_dtype) for name, a in arrays.items()}
    else:
        arrays = {name: torch.as_tensor(a).to(device=device, dtype=dtype) for name, a in arrays.items()}
    return Problem(**arrays)


def _run(solver, problem: Problem) -> Assignment:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = solver(problem)
    warned = any(issubclass(w.category, NotConvergedWarning) for w in caught)
    assert isinstance(result, Assignment), f"{solver.name}: expected an Assignment, found {type(result).__name__}"
    assert result.converged or warned, (
        f"{solver.name}: returned converged=False without a NotConvergedWarning"
    )
    return result


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_valid(solver, problem: Problem, result: Assignment) -> None:
    n, k = problem.n_samples, problem.n_clusters
    labels = _np(result.labels)
    assert labels.shape == (n,), f"{solver.name}: labels expected shape ({n},), found {labels.shape}"
    assert labels.dtype == np.int64, f"{solver.name}: labels expected int64, found {labels.dtype}"
    assert labels.min() >= 0 and labels.max() < k, (
        f"{solver.name}: labels expected in [0, {k}), found range [{labels.min()}, {labels.max()}]"
    )
    assert result.n_clusters == k, f"{solver.name}: n_clusters expected {k}, found {result.n_clusters}"
    if result.soft is not None:
        soft = _np(result.soft).astype(np.float64)
        assert soft.shape == (n, k), f"{solver.name}: soft expected shape ({n}, {k}), found {soft.shape}"
        assert np.isfinite(soft).all(), f"{solver.name}: soft has NaN/inf"
        assert (soft >= -1e-7).all(), f"{solver.name}: soft has negative entries (min {soft.min()})"
        err = np.abs(soft.sum(1) - 1).max()
        assert err < 1e-4, f"{solver.name}: soft rows expected to sum to 1, worst row off by {err:.3g}"
    assert result.solver == solver.name, f"{solver.name}: result.solver is {result.solver!r}"
    assert result.n_iters >= 0 and result.seconds >= 0


# ---------------------------------------------------------------- the checks
def check_metadata(solver) -> None:
    """Class attributes the registry and CLI read are present and sensible."""
    assert isinstance(solver.name, str) and solver.name, "solver.name must be a non-empty str"
    assert solver.needs in ("scores", "features", "scores_or_features"), (
        f"{solver.name}: needs expected 'scores', 'features' or 'scores_or_features', found {solver.needs!r}"
    )
    assert isinstance(solver.gpu, bool) and isinstance(solver.requires_n_ge_k, bool)
    assert (type(solver).__doc__ or "").strip(), f"{solver.name}: the class needs a docstring (its description)"


def check_torch_float32(solver) -> None:
    """torch float32 in: valid result, labels/soft are torch tensors, soft float32."""
    problem = make_problem("torch", torch.float32)
    result = _run(solver, problem)
    _check_valid(solver, problem, result)
    assert isinstance(result.labels, torch.Tensor), f"{solver.name}: torch in, labels came back as {type(result.labels)}"
    if result.soft is not None:
        assert isinstance(result.soft, torch.Tensor) and result.soft.dtype == torch.float32, (
            f"{solver.name}: soft expected torch float32, found {type(result.soft).__name__} "
            f"{getattr(result.soft, 'dtype', None)}"
        )


def check_torch_float64(solver) -> None:
    """torch float64 in: soft stays float64."""
    problem = make_problem("torch", torch.float64)
    result = _run(solver, problem)
    _check_valid(solver, problem, result)
    if result.soft is not None:
        assert result.soft.dtype == torch.float64, f"{solver.name}: soft expected float64, found {result.soft.dtype}"


def check_numpy_family(solver) -> None:
    """numpy in: numpy out."""
    problem = make_problem("numpy", torch.float64)
    result = _run(solver, problem)
    _check_valid(solver, problem, result)
    assert isinstance(result.labels, np.ndarray), f"{solver.name}: numpy in, labels came back as {type(result.labels)}"
    if result.soft is not None:
        assert isinstance(result.soft, np.ndarray) and result.soft.dtype == np.float64, (
            f"{solver.name}: soft expected numpy float64, found {type(result.soft).__name__}"
        )


def check_cuda_device(solver) -> None:
    """CUDA in: results on the same CUDA device (skipped without CUDA)."""
    if not torch.cuda.is_available():
        raise unittest.SkipTest("no CUDA device")
    problem = make_problem("torch", torch.float32, device="cuda")
    result = _run(solver, problem)
    _check_valid(solver, problem, result)
    assert result.labels.device.type == "cuda", f"{solver.name}: labels came back on {result.labels.device}"


def check_deterministic(solver) -> None:
    """The same configuration (and seed) on the same problem gives the same result."""
    problem = make_problem("torch", torch.float64)
    first, second = _run(solver, problem), _run(solver, problem)
    assert np.array_equal(_np(first.labels), _np(second.labels)), f"{solver.name}: labels differ between runs"
    if first.soft is not None:
        assert np.allclose(_np(first.soft), _np(second.soft), atol=1e-10), f"{solver.name}: soft differs between runs"


def check_recovers_mixture(solver) -> None:
    """On a well-separated balanced mixture, labels agree with the truth up to permutation."""
    from .metrics import hungarian_accuracy

    problem = make_problem("torch", torch.float64, seed=1)
    result = _run(solver, problem)
    acc = hungarian_accuracy(_np(result.labels), np.arange(problem.n_samples) % problem.n_clusters)
    assert acc >= 0.8, f"{solver.name}: expected accuracy >= 0.8 on a separated mixture, found {acc:.3f}"


def check_missing_input(solver) -> None:
    """A problem without the input the solver needs is a clear InvalidProblemError."""
    full = make_problem("torch", torch.float64)
    if solver.needs == "scores":
        problem = Problem(features=full.features, n_clusters=K)
        expected = "scores"
    elif solver.needs == "features":
        problem = Problem(scores=full.scores)
        expected = "features"
    else:
        raise unittest.SkipTest("solver accepts scores or features")
    try:
        solver(problem)
    except InvalidProblemError as exc:
        assert expected in str(exc), f"{solver.name}: error should name {expected!r}: {exc}"
    else:
        raise AssertionError(f"{solver.name}: expected InvalidProblemError for a problem without {expected}")


def check_more_clusters_than_samples(solver) -> None:
    """K > N: an error naming N and K when the solver needs N >= K, else a valid result."""
    problem = make_problem("torch", torch.float64, n=5, k=8)
    if solver.requires_n_ge_k:
        try:
            solver(problem)
        except InvalidProblemError as exc:
            message = str(exc)
            # the message must name both numbers: N = 5 samples and K = 8 clusters
            named = ("5" in message and "8" in message and "N" in message and "K" in message)
            assert named, f"{solver.name}: error should name N = 5 and K = 8, found {message!r}"
            return
        raise AssertionError(f"{solver.name}: requires_n_ge_k but accepted N=5, K=8")
    _check_valid(solver, problem, _run(solver, problem))


CHECKS: list[Callable] = [
    check_metadata, check_torch_float32, check_torch_float64, check_numpy_family, check_cuda_device,
    check_deterministic, check_recovers_mixture, check_missing_input, check_more_clusters_than_samples,
]


def run_conformance(solver) -> list[str]:
    """Run every check on ``solver``; returns the names of skipped checks, raises on failure."""
    skipped = []
    for check in CHECKS:
        try:
            check(solver)
        except unittest.SkipTest:
            skipped.append(check.__name__)
    return skipped
