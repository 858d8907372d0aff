"""AMADetector: mirrored pairs, gradient penalty by hand, negatives, training, scores, bad input.

Its sklearn estimator checks run with every other estimator's in test_estimator_checks.py.
"""

import copy
import pickle

import numpy as np
import pytest
import torch
from scipy.stats import norm, spearmanr

from skood import AMADetector
from skood.metrics import auroc
from skood.nn.ama import (
    AMALoss,
    AMAModule,
    ConvCritic,
    ConvDecoder,
    ConvEncoder,
    MLPCritic,
    SpectralNorm,
    atypical_negatives,
    gradient_penalty,
    mirrored_pair,
)


@pytest.fixture(scope="module")
def ama(digits_one_class, ama_small):
    return AMADetector(**ama_small).fit(digits_one_class[0])


# -- pairs, penalty, negatives -------------------------------------------------------------------


def test_mirrored_pairs_put_x_first_on_the_channel_or_feature_axis():
    x, other = torch.arange(8.0).reshape(2, 4), -torch.arange(8.0).reshape(2, 4)
    flat = mirrored_pair(x, other, None)
    assert torch.equal(flat, torch.cat([x, other], dim=1))
    images = mirrored_pair(x, other, (1, 2, 2))
    assert images.shape == (2, 2, 2, 2)
    assert torch.equal(images[:, 0].reshape(2, 4), x) and torch.equal(
        images[:, 1].reshape(2, 4), other
    )

    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def features(self, pair):
            seen.append(pair.clone())
            return pair.reshape(pair.shape[0], -1) * self.w

        def forward(self, pair):
            return self.features(pair).sum(1)

    identity = torch.nn.Identity()
    module = AMAModule(identity, torch.nn.Linear(4, 4), Recorder())
    module.r_score(x)
    assert torch.equal(seen[0], torch.cat([x, x], 1))  # (x, x): the real pair
    assert torch.equal(seen[1][:, :4], x)  # (x, x_hat): x first, its reconstruction second
    assert torch.equal(seen[1][:, 4:], module(x).detach())
    single = AMAModule(identity, torch.nn.Identity(), Recorder(), mirrored=False)
    assert single.pair(x, other).shape == (2, 4)  # the ablation: the critic sees x_hat alone


def test_gradient_penalty_matches_hand_computations():
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 1, bias=False)
    real, fake = torch.randn(5, 6), torch.randn(5, 6)
    expected = (linear.weight.norm() - 1) ** 2  # grad of w.p is w for every mixed point
    assert gradient_penalty(linear, real, fake).item() == pytest.approx(expected.item(), rel=1e-6)

    class Square(torch.nn.Module):  # D(p) = sum p^2: grad 2 p at the mixed point
        def forward(self, p):
            return (p**2).reshape(p.shape[0], -1).sum(1)

    real, fake = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)  # image pairs: flattened norm
    torch.manual_seed(1)
    got = gradient_penalty(Square(), real, fake)
    torch.manual_seed(1)
    u = torch.rand(4, 1, 1, 1)
    mixed = u * real + (1 - u) * fake
    hand = ((2 * mixed).reshape(4, -1).norm(dim=1) - 1).pow(2).mean()
    assert got.item() == pytest.approx(hand.item(), rel=1e-6)


def test_spectral_norm_divides_by_the_largest_singular_value_and_pickles():
    torch.manual_seed(0)
    linear = SpectralNorm(torch.nn.Linear(10, 6))
    for _ in range(100):  # one power iteration per training forward pass
        linear(torch.randn(3, 10))
    w = linear.normalized_weight().detach()
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(
        w * torch.linalg.matrix_norm(linear.layer.weight, ord=2), linear.layer.weight, atol=1e-5
    )
    conv = SpectralNorm(torch.nn.Conv2d(2, 4, 3, padding=1))
    for _ in range(100):
        conv(torch.randn(1, 2, 5, 5))
    flat = conv.normalized_weight().detach().reshape(4, -1)
    assert torch.linalg.matrix_norm(flat, ord=2).item() == pytest.approx(1.0, abs=1e-4)
    x = torch.randn(2, 10)
    linear.eval()
    assert torch.equal(pickle.loads(pickle.dumps(linear))(x), linear(x))
    assert sum(p.numel() for p in linear.parameters()) == 66  # the layer's own, nothing added


def test_atypical_negatives_scale_codes_inside_or_outside():
    module = AMAModule(torch.nn.Identity(), torch.nn.Identity(), MLPCritic(8, (4,)))
    x = torch.randn(50, 4) + 3.0
    torch.manual_seed(0)
    for direction, lo, hi in [("inward", 0.5, 1.0), ("outward", 1.0, 1.5)]:
        neg = atypical_negatives(module, x, 200, direction, 0.5)
        # Each negative is s * x_j for some row j: recover s from any coordinate.
        ratios = torch.stack([(neg / row).mean(1) for row in x]).T
        consistent = (neg[:, None, :] / x[None] - ratios[..., None]).abs().max(-1).values < 1e-5
        s = ratios[consistent]
        assert consistent.any(1).all() and (s >= lo - 1e-6).all() and (s <= hi + 1e-6).all()
    origin = atypical_negatives(module, x, 100, "origin", 0.5)
    assert (origin >= 0).all() and (origin <= x.norm(dim=1).min()).all()
    assert module.training  # the mode is restored


def test_losses_are_finite_and_train_the_right_networks():
    torch.manual_seed(0)
    module = AMAModule(torch.nn.Linear(6, 3), torch.nn.Linear(3, 6), MLPCritic(12, (8, 4)))
    x, w = torch.randn(10, 6), torch.ones(10)
    w[-2:] = -5.0
    loss = AMALoss()
    critic = loss.critic_loss(module, x, w)
    critic.backward()
    assert all(p.grad is None for p in module.encoder.parameters())  # E, G untouched
    assert all(p.grad is None for p in module.decoder.parameters())
    assert all(p.grad is not None for p in module.critic.parameters())
    module.zero_grad(set_to_none=True)
    gen = loss.generator_loss(module, x, w)
    gen.backward()
    assert all(p.grad is not None for p in module.encoder.parameters())
    assert all(p.grad is not None for p in module.decoder.parameters())
    assert torch.isfinite(critic) and torch.isfinite(gen)


def test_conv_networks_shapes():
    E, G = ConvEncoder((3, 16, 16), 10), ConvDecoder((3, 16, 16), 10, channels=16)
    D = ConvCritic(6, (16, 16), ch=8)
    module = AMAModule(E, G, D, image_shape=(3, 16, 16))
    x = torch.rand(4, 3 * 16 * 16) * 2 - 1
    assert module(x).shape == x.shape and (module(x).abs() <= 1).all()
    assert D.features(module.pair(x, module(x))).shape == (4, 8)
    assert module.r_score(x).shape == (4,)


# -- the fitted estimator -----------------------------------------------------------------------


def _with_score(det, score):
    return copy.deepcopy(det).set_params(ood_score=score)


def test_a_changed_ood_score_rescores_but_refuses_the_stale_threshold(ama, digits_one_class):
    X_test = digits_one_class[1][:40]
    as_r = _with_score(ama, "R")
    np.testing.assert_array_equal(as_r.score_samples(X_test), -ama.r_score(X_test))
    # offset_ is the 5 % quantile of held-out log A scores: against -R it would flag at random.
    for method in (as_r.predict, as_r.decision_function):
        with pytest.raises(ValueError, match=r"ood_score='A'.*ood_score='R'.*fit again"):
            method(X_test)
    as_r.set_params(ood_score="A")  # set back: thresholding works again
    np.testing.assert_array_equal(as_r.predict(X_test), ama.predict(X_test))


def test_training_changes_every_network_and_beats_the_untrained_model(
    ama, digits_one_class, ama_small
):
    X_train, X_test, y_test = digits_one_class
    untrained = AMADetector(**{**ama_small, "max_epochs": 1, "lr": 1e-12}).fit(X_train)
    before = dict(untrained.net_.module_.named_parameters())
    for name, p in ama.net_.module_.named_parameters():
        assert not torch.allclose(p, before[name]), f"{name} did not change"
    # The A-score detects the other digits better than the untrained networks' (measured 0.956
    # vs 0.936). R is inverted after this short training (0.02: the other digits get *lower* R),
    # which the two-sided A absorbs: the paper's point.
    trained, base = (auroc(y_test, det.score_samples(X_test)) for det in (ama, untrained))
    assert trained > base and trained > 0.9
    history = ama.net_.history
    assert np.isfinite(history[:, "critic_loss"]).all() and len(history) == 30
    warmup = round(0.1 * 30)
    negatives = [sum(b["n_negatives"] for b in epoch["batches"]) for epoch in history]
    assert sum(negatives[:warmup]) == 0 and all(n > 0 for n in negatives[warmup:])


def test_a_score_is_the_log_gaussian_density_of_r(ama, digits_one_class):
    X_test = digits_one_class[1]
    r = ama.r_score(X_test)
    log_a = ama.score_samples(X_test)
    np.testing.assert_allclose(log_a, norm.logpdf(r, ama.mu_, ama.sigma_), rtol=1e-9)
    a = norm.pdf(r, ama.mu_, ama.sigma_)
    assert spearmanr(a, log_a).statistic == pytest.approx(1.0)
    r_train = ama.r_score(digits_one_class[0])
    assert ama.mu_ == pytest.approx(r_train.mean(), rel=1e-6)
    assert ama.sigma_ == pytest.approx(r_train.std(), rel=1e-6)
    assert _with_score(ama, "R").score_samples(X_test) == pytest.approx(-r)
    recon = ama.reconstruct(X_test)
    assert recon.shape == X_test.shape and recon.dtype == np.float64
    np.testing.assert_allclose(
        _with_score(ama, "recon").score_samples(X_test), -np.abs(recon - X_test).mean(1), rtol=1e-6
    )
    assert (ama.predict(digits_one_class[0]) == 1).mean() == pytest.approx(0.9, abs=0.02)


def test_outlier_rows_are_left_out_and_holdout_calibrates(digits_one_class, ama_small):
    X_train = digits_one_class[0]
    X = np.vstack([X_train, np.full((20, 64), 5.0, dtype=np.float32)])
    y = np.r_[np.ones(len(X_train)), -np.ones(20)]
    fast = {**ama_small, "max_epochs": 2}
    a = AMADetector(**fast).fit(X, y)
    b = AMADetector(**fast).fit(X_train)
    np.testing.assert_array_equal(a.score_samples(X_train), b.score_samples(X_train))
    held = AMADetector(**fast, validation_fraction=0.3).fit(X_train)
    assert held.mu_ != b.mu_


def test_determinism_and_pickling(ama, digits_one_class, ama_small):
    X = digits_one_class[1]
    fast = {**ama_small, "max_epochs": 4}
    first, again = (AMADetector(**fast).fit(digits_one_class[0]) for _ in range(2))
    np.testing.assert_array_equal(again.score_samples(X), first.score_samples(X))
    restored = pickle.loads(pickle.dumps(ama))
    np.testing.assert_array_equal(restored.score_samples(X), ama.score_samples(X))
    np.testing.assert_array_equal(restored.reconstruct(X), ama.reconstruct(X))


def test_ablations_and_user_networks_fit(digits_one_class, ama_small):
    X = digits_one_class[0]
    fast = {**ama_small, "max_epochs": 2}
    for params in [
        dict(mirrored=False),
        dict(lambda_inter=0.0, neg_direction=None),
        dict(neg_direction="origin", neg_warmup=0.0, interp_update_generator=False),
        dict(lambda_rec=1.0, spectral_norm=False, lr_schedule=None),
    ]:
        det = AMADetector(**fast, **params).fit(X)
        assert np.isfinite(det.score_samples(X)).all(), params
    triple = (torch.nn.Linear(64, 4), torch.nn.Linear(4, 64), MLPCritic(128, (16,)))
    det = AMADetector(module=triple, **fast).fit(X)
    assert det.net_.module_.encoder is not triple[0]  # deep-copied
    det = AMADetector(
        module=lambda n, shape, d: (
            torch.nn.Linear(n, d),
            torch.nn.Linear(d, n),
            MLPCritic(2 * n, (8,)),
        ),
        **fast,
    ).fit(X)
    assert det.latent_dim_ == 8


def small_conv(n, shape, d):
    """The paper's conv layout at a CPU-test width (module level: the estimator pickles it)."""
    return (
        ConvEncoder(shape, d, width=4),
        ConvDecoder(shape, d, channels=8),
        ConvCritic(2 * shape[0], shape[1:], ch=8),
    )


def test_conv_networks_are_picked_for_images_and_pairs_stack_on_channels():
    auto = AMADetector(image_shape=(1, 16, 16))
    module = auto._networks(256)
    assert isinstance(module.critic, ConvCritic) and auto.latent_dim_ == 128
    assert module.image_shape == (1, 16, 16)
    assert isinstance(AMADetector(image_shape=(1, 8, 8))._networks(64).critic, MLPCritic)

    rng = np.random.RandomState(0)
    X = np.tanh(rng.normal(size=(40, 256))).astype(np.float32)
    det = AMADetector(
        module=small_conv,
        image_shape=(1, 16, 16),
        latent_dim=6,
        max_epochs=2,
        batch_size=20,
        n_critic=1,
        random_state=0,
    ).fit(X)
    assert det.net_.module_.image_shape == (1, 16, 16)
    assert np.isfinite(det.score_samples(X)).all()
    assert np.isfinite(pickle.loads(pickle.dumps(det)).score_samples(X)).all()


def test_bad_input_gives_clear_errors(ama, digits_one_class, ama_small):
    X = digits_one_class[0]
    with pytest.raises(ValueError, match="NaN"):
        AMADetector(**ama_small).fit(np.where(np.eye(len(X), 64) > 0, np.nan, X))
    with pytest.raises(ValueError, match="features"):
        ama.score_samples(X[:, :10])
    with pytest.raises(ValueError, match="every row as an outlier"):
        AMADetector(**ama_small).fit(X, -np.ones(len(X)))
    with pytest.raises(ValueError, match="image_shape"):
        AMADetector(image_shape=(1, 7, 7)).fit(X)
    with pytest.raises(ValueError, match="module='conv' needs"):
        AMADetector(module="conv", image_shape=(1, 8, 8)).fit(X)
    with pytest.raises(ValueError, match=r"three nn\.Module"):
        AMADetector(module=(torch.nn.Linear(64, 2),)).fit(X)
    no_features = (torch.nn.Linear(64, 4), torch.nn.Linear(4, 64), torch.nn.Linear(128, 1))
    with pytest.raises(ValueError, match="no `features` method"):
        AMADetector(module=no_features).fit(X)
    with pytest.raises(ValueError, match="ood_score"):
        AMADetector(ood_score="B").fit(X)
