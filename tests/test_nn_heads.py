"""ICE's Gaussian head and loss (pure torch): against numpy Mahalanobis and hand computations."""

import numpy as np
import pytest
import torch

from skood.nn.heads import GaussianHead
from skood.nn.losses import ICELoss


def _random_head(d=4, k=3, seed=0):
    torch.manual_seed(seed)
    head = GaussianHead(d, k).double()
    with torch.no_grad():
        head.lower.copy_(torch.randn(d, d) * 0.5)
        head.diag_raw.copy_(torch.randn(d))
    return head


def test_logits_are_minus_the_squared_mahalanobis_distance():
    head = _random_head()
    z = torch.randn(6, 4, dtype=torch.float64)
    L = head.cholesky.detach().numpy()
    assert np.allclose(L, np.tril(L)) and np.all(np.diag(L) > 0)
    precision = np.linalg.inv(L @ L.T)
    m = head.means.detach().numpy()
    expected = np.array([[-(zi - mi) @ precision @ (zi - mi) for mi in m] for zi in z.numpy()])
    np.testing.assert_allclose(head(z).detach().numpy(), expected, rtol=1e-8, atol=1e-10)
    assert (head(z) <= 0).all()
    on_centre = head(head.means.detach())
    np.testing.assert_allclose(on_centre.diagonal().detach().numpy(), 0.0, atol=1e-9)


def test_starts_as_the_identity_and_inits_from_data():
    head = GaussianHead(3, 2)
    np.testing.assert_allclose(head.cholesky.detach().numpy(), np.eye(3), atol=1e-6)
    rng = np.random.RandomState(0)
    z = torch.tensor(np.vstack([rng.normal(0, 1, (200, 3)), rng.normal(5, 1, (200, 3))]))
    labels = torch.tensor(np.r_[np.zeros(200), np.ones(200)]).long()
    head = head.double()
    head.init_from_data(z, labels)
    np.testing.assert_allclose(head.means[1].detach().numpy(), z[200:].mean(0), rtol=1e-9)
    assert (head(z).argmax(1) == labels).float().mean() > 0.99


def test_ice_loss_matches_a_hand_computation():
    h = torch.tensor(
        [[-0.5, -3.0, -2.0], [-4.0, -0.2, -1.0], [-1.5, -0.7, -6.0], [-2.0, -9.0, -0.1]],
        dtype=torch.float64,
    )
    target = torch.tensor([0, 1, -1, -1])
    hn = h.numpy()
    log_softmax = hn - np.log(np.exp(hn).sum(1, keepdims=True))
    ce = -np.mean([log_softmax[0, 0], log_softmax[1, 1]])
    id_term = -np.mean([hn[0, 0], hn[1, 1]])
    ood_term = -np.mean(np.log(1 - np.exp(hn[2:].max(1))))
    for lam in [0.1, 0.5, 1.0]:
        expected = ce + lam * (id_term + ood_term)
        assert ICELoss(lam)(h, target).item() == pytest.approx(expected, rel=1e-12)
    ablation = ce + 0.5 * ood_term  # ICE^-: without the in-distribution term
    assert ICELoss(0.5, id_term=False)(h, target).item() == pytest.approx(ablation, rel=1e-12)


def test_an_outlier_on_a_centre_gives_a_finite_loss_and_gradient():
    head = _random_head()
    z = torch.cat([head.means.detach()[:1], torch.randn(2, 4, dtype=torch.float64)])
    z.requires_grad_(True)
    loss = ICELoss()(head(z), torch.tensor([-1, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())
    assert torch.isfinite(z.grad).all()
