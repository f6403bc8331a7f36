"""Shared numerical kernels used by the built-in solvers, the training recipes and ``compare``.

Written once here: PCA-whitening (:mod:`.pca`), centroid seeding and (weighted) means
(:mod:`.centroids`), size statistics (:mod:`.stats`) and distributed helpers (:mod:`.dist`).
Pure functions on tensors; nothing here imports a plugin.
"""
