"""The quantile loss against torch.quantile / numpy, and where its gradient goes."""

import numpy as np
import pytest
import torch

from skood.nn import QuantileNLLLoss, batch_quantile


@pytest.mark.parametrize("n", [1, 2, 7, 128, 129])
@pytest.mark.parametrize("q", [0.0, 0.05, 0.1, 0.25, 0.5, 0.99])
def test_loss_equals_minus_torch_quantile(n, q):
    ll = torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64) * 10
    loss = QuantileNLLLoss(q)(ll)
    torch.testing.assert_close(loss, -torch.quantile(ll, q))
    np.testing.assert_allclose(batch_quantile(ll, q).item(), np.quantile(ll.numpy(), q))


def test_spec_example_batch_128_q005_interpolates_ranks_6_and_7():
    ll = torch.arange(128, dtype=torch.float64)  # sorted: l_(k) = k
    assert QuantileNLLLoss(0.05)(ll).item() == pytest.approx(-(0.65 * 6 + 0.35 * 7))


def test_gradient_reaches_only_the_two_interpolated_samples():
    ll = torch.randn(128, generator=torch.Generator().manual_seed(0), requires_grad=True)
    QuantileNLLLoss(0.05)(ll).backward()
    nonzero = torch.nonzero(ll.grad).ravel()
    assert nonzero.numel() == 2
    order = torch.argsort(ll.detach())
    assert set(nonzero.tolist()) == {order[6].item(), order[7].item()}
    torch.testing.assert_close(ll.grad.sum(), torch.tensor(-1.0))


def test_q_zero_is_minus_min_and_mean_is_mean_nll():
    ll = torch.tensor([-3.0, -1.0, -7.0])
    assert QuantileNLLLoss(0.0)(ll).item() == 7.0
    assert QuantileNLLLoss("mean")(ll).item() == pytest.approx(11 / 3)


@pytest.mark.parametrize("bad", [1.0, -0.1, "median", None])
def test_invalid_q_is_rejected(bad):
    with pytest.raises(ValueError, match="q must be"):
        QuantileNLLLoss(bad)
