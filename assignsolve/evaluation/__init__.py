"""Held-out evaluation of a frozen encoder, as the SSL literature reports it.

- :func:`linear_probe`: multinomial logistic regression on cached, frozen features, trained
  on the train split, top-1 accuracy on the test split; the L2 weight is chosen on a
  validation part of the train split (the sweep of CLIP's linear-probe protocol).
- :func:`weighted_knn`: the weighted kNN classifier of Wu et al. (2018), k = 20 and 200,
  temperature 0.07, train split as the memory bank, test split as queries.

Both take features (numpy or torch, any device) and integer labels; neither touches an
encoder, so features are computed once and reused by every protocol.
"""

from .knn import weighted_knn, weighted_knn_predict
from .probe import LinearProbeConfig, LinearProbeResult, fit_logistic, linear_probe

__all__ = ["LinearProbeConfig", "LinearProbeResult", "fit_logistic", "linear_probe",
           "weighted_knn", "weighted_knn_predict"]
