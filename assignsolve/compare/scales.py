r"""Scale-aware defaults of ``compare``: epsilon and temperature relative to the score spread.

A fixed entropic regulariser means different things on different features: SwAV's
:math:`\varepsilon = 0.05` is small next to prototype logits but large next to cosine scores of
raw pixels, whose standard deviation is about 0.1 (digits: 0.096, MNIST pixels: 0.121), where it
flattens the plan and unbalances the hard labels. ``compare`` therefore sets, unless the user
gives the option with ``--solver-opt``,

.. math::

    \sigma = \operatorname{std}\big(S^{(0)}\big),\qquad
    \varepsilon = \varepsilon_{\mathrm{rel}}\,\sigma,\qquad \tau = \tau_{\mathrm{rel}}\,\sigma,

with :math:`S^{(0)}` the scores of the features against the shared initial centroids (computed
once, so every solver and every round sees the same value) and the defaults
:data:`EPSILON_REL` = :data:`TAU_REL` = 0.1 (``--epsilon-rel``, ``--tau-rel``).

* :math:`\varepsilon` goes to every score solver that has an ``epsilon`` option (sinkhorn-gpu,
  sinkhorn-pot, a third party's entropic solver).
* :math:`\tau` is the temperature of the solvers that read scores as logits of two views
  (:func:`reads_two_views`: iic): they get ``S / tau`` and, as the second view, ``S[j] / tau`` for
  ``j`` one of the ``--pair-k`` nearest neighbours of ``i`` in feature space (SCAN's neighbour
  pairs, Van Gansbeke et al. 2020: on fixed features there is no augmentation, and a sample paired
  with itself makes IIC's joint degenerate), drawn with ``--seed``.
"""

from __future__ import annotations

import numpy as np
import torch

EPSILON_REL = 0.1
TAU_REL = 0.1
PAIR_K = 10


def score_spread(x: np.ndarray, c0: np.ndarray, metric: str) -> float:
    """Population standard deviation of the initial scores ``S(x, C0)`` (all N*K entries, float64)."""
    from ..core.problem import Problem

    s = Problem.from_features(torch.from_numpy(x), torch.from_numpy(c0), metric=metric).scores
    return float(s.double().std(correction=0))


def reads_two_views(entry) -> bool:
    """Solvers that read scores as logits of two views: the ones whose default recipe is IIC."""
    return getattr(entry.cls, "default_recipe", None) == "iic" or entry.name == "iic"


def neighbour_pairs(x: np.ndarray, k: int, seed: int, block: int = 1024) -> np.ndarray:
    """For every row ``i``, one of its ``k`` nearest other rows (cosine on ``x``), drawn with ``seed``.

    Neighbours are ranked by ``(-similarity, index)``, so ties resolve the same on every
    machine; the draw uses ``numpy.random.default_rng(seed)``.

    Returns
    -------
    ndarray [N] int64
    """
    n = x.shape[0]
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    k = max(1, min(int(k), n - 1))
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    xn = xn.astype(np.float64)
    nbrs = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        sim = xn[start:start + block] @ xn.T
        rows = np.arange(sim.shape[0])
        sim[rows, start + rows] = -np.inf  # never the sample itself
        order = np.lexsort((np.broadcast_to(np.arange(n), sim.shape), -sim), axis=1)
        nbrs[start:start + block] = order[:, :k]
    pick = np.random.default_rng(seed).integers(0, k, size=n)
    return nbrs[np.arange(n), pick]


def scale_options(entry, names: set[str], user: dict, spread: float, epsilon_rel: float,
                  tau_rel: float) -> tuple[dict, dict]:
    """Options to add for ``entry`` and a description of the scale used.

    Returns
    -------
    options : dict
        ``{"epsilon": epsilon_rel * spread}`` for a score solver with an ``epsilon`` option the
        user did not set; empty otherwise.
    scale : dict
        ``{"epsilon": value, "rule": "0.1 x std(S0)"}``, ``{"tau": ...}``, ``{"epsilon": value,
        "rule": "user"}`` or empty.
    """
    if entry.needs == "features":
        return {}, {}
    if "epsilon" in names:
        if "epsilon" in user:
            return {}, {"epsilon": float(user["epsilon"]), "rule": "user"}
        eps = float(epsilon_rel * spread)
        return {"epsilon": eps}, {"epsilon": eps, "rule": f"{epsilon_rel:g} x std(S0)"}
    if reads_two_views(entry):
        tau = float(tau_rel * spread)
        return {}, {"tau": tau, "rule": f"{tau_rel:g} x std(S0)"}
    return {}, {}


def scale_text(scale: dict) -> str:
    """``eps=0.00957`` / ``tau=0.00957`` / ``-`` for the table."""
    if "epsilon" in scale:
        return f"eps={scale['epsilon']:.3g}" + ("*" if scale.get("rule") == "user" else "")
    if "tau" in scale:
        return f"tau={scale['tau']:.3g}"
    return "-"
