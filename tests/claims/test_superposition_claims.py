"""Toy models of superposition: sparsity buys features beyond the hidden dimensions.

Measured (n=20, m=5, importance 0.7**i, 2000 Adam steps, batch 512, seed 0): at S=0 the model
represents 6 features (‖W_i‖ > 0.5; the 6th is a decaying leftover), m/‖W‖_F² = 1.00; at S=0.99
it represents 13 with 0.39 dimensions per feature. (3000 steps, batch 1024: 5 and 11, 1.00 and
0.41; 1000 steps: 8 and 12 — at S=0 the count needs training to converge, m/‖W‖_F² does not.)
"""

from ffnmem.methods import superposition as sp


def test_sparsity_gives_superposition():
    models = sp.sparsity_sweep([0.0, 0.99], n_features=20, n_hidden=5, steps=2000, batch=512, seed=0)
    dense, sparse = models.metrics["represented"].tolist()
    dpf = models.metrics["dims_per_feature"].tolist()
    assert abs(dense - 5) <= 1  # about m features at S=0
    assert sparse >= 8  # clearly more features than the 5 dims
    assert dpf[0] > 0.85 and dpf[1] < 0.6

