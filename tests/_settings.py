"""Small estimator settings that test modules need while pytest collects them.

A fixture cannot reach ``@pytest.mark.parametrize`` arguments, module-level estimator lists (the
``ESTIMATORS`` of test_estimator_checks.py) or module-level factories (the ``DIVERGING`` cases of
test_failures.py): those are built when pytest imports the module, before any fixture exists. So
these settings are plain constants, defined here once and imported where used. Settings only test
bodies use are fixtures in conftest.py (``flow_tiny`` is this module's ``TINY_FLOW``).

Treat them as read-only: derive a variant with ``{**TINY_FLOW, "max_epochs": 20}``.
"""

# -- QuantileFlowDetector --------------------------------------------------------------------------

#: A flow small enough that sklearn's ~50 estimator checks run in seconds.
TINY_FLOW = dict(n_blocks=2, hidden_sizes=(16, 16), max_epochs=2, min_steps=0, batch_size=32)

# -- the outlier-exposure family: HSC, OE, Deep SAD, Deep SVDD -----------------------------------

#: Just runs (test_failures.py: divergence, Ctrl-C, bad labels).
HSC_TINY = dict(hidden_sizes=(16,), max_epochs=3, min_steps=0, random_state=0)
#: sklearn's estimator checks (test_estimator_checks.py).
HSC_CHECKS = dict(hidden_sizes=(16,), feature_dim=4, max_epochs=3, min_steps=0, random_state=0)
#: Learns the separable toy and digit 0 vs OE rows (test_hsc.py, also in its parametrize ids).
HSC_SMALL = dict(hidden_sizes=(32,), feature_dim=8, max_epochs=20, min_steps=0, random_state=0)

# -- sklearn's estimator checks, one per family (test_estimator_checks.py) -----------------------

AMA_CHECKS = dict(
    hidden_sizes=(8,), latent_dim=2, max_epochs=2, n_critic=1, batch_size=32, random_state=0
)
ICE_CHECKS = dict(hidden_sizes=(16,), feature_dim=4, max_epochs=20, random_state=0)
#: The two ICE variants beside the default (linear head with OE, Gaussian head OOD-only).
ICE_CHECKS_50 = {**ICE_CHECKS, "max_epochs": 50}
VAE_CHECKS = dict(latent_dim=2, hidden_sizes=(8,), max_epochs=2, min_steps=0, random_state=0)
#: OpenSetClassifier's stage 1 (a ClassifierFeatures).
STAGE1_CHECKS = dict(hidden_sizes=(16,), max_epochs=5, random_state=0)
