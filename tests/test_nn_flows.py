"""The flow's math: exact inverse, log-determinant equal to autograd's log|det J|, ActNorm init."""

import math

import pytest
import torch
from torch.autograd.functional import jacobian
from torch.distributions import Normal

from skood.nn import ActNorm, AffineCoupling, LUPermutation, Permutation, glow_flow


def _autograd_logdet(fn, x):
    """log|det J| of fn at each row of x, from the full autograd Jacobian."""
    out = []
    for row in x:
        jac = jacobian(lambda r: fn(r[None])[0][0], row)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


@pytest.mark.parametrize("kind", AffineCoupling.KINDS)
@pytest.mark.parametrize("features", [2, 3, 5])
def test_coupling_inverse_and_logdet(kind, features):
    torch.manual_seed(0)
    block = AffineCoupling(features, hidden_sizes=(8, 8), clamp=2.0, kind=kind).double()
    x = torch.randn(4, features, dtype=torch.float64)
    y, logdet = block(x)
    torch.testing.assert_close(block.inverse(y), x)
    torch.testing.assert_close(logdet, _autograd_logdet(block, x))
    if kind in ("nice", "gin"):  # volume preserving
        torch.testing.assert_close(logdet, torch.zeros(4, dtype=torch.float64))


def test_coupling_conditions_second_half_on_transformed_first_half():
    """Eq. 2 of the paper has a typo (u1); the code conditions on v1. Check that dependence."""
    torch.manual_seed(0)
    block = AffineCoupling(4, hidden_sizes=(8, 8)).double()
    x = torch.randn(1, 4, dtype=torch.float64)
    v1 = block(x)[0][:, :2]
    s1, t1 = block._scale_shift(1, v1)
    expected_v2 = x[:, 2:] * torch.exp(s1) + t1
    torch.testing.assert_close(block(x)[0][:, 2:], expected_v2)


def test_soft_clamp_bounds_log_scale():
    block = AffineCoupling(4, hidden_sizes=(8,), clamp=3.0)
    s, _ = block._scale_shift(2, torch.full((2, 2), 1e6))
    assert s.abs().max() < 3.0


@pytest.mark.parametrize("permutation", ["random", "reverse", "learned"])
@pytest.mark.parametrize("coupling", AffineCoupling.KINDS)
def test_flow_inverse_logdet_and_log_prob(permutation, coupling):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    flow = (
        glow_flow(
            4,
            n_blocks=3,
            hidden_sizes=(8, 8),
            dropout=0.3,
            coupling=coupling,
            permutation=permutation,
            generator=gen,
        )
        .double()
        .eval()
    )
    x = torch.randn(5, 4, dtype=torch.float64) * 2 + 1
    flow.initialize(x)
    z, logdet = flow.transform(x)
    torch.testing.assert_close(flow.inverse(z), x)
    torch.testing.assert_close(logdet, _autograd_logdet(flow.transform, x))
    # log p(x) = log N(z; 0, I) + log|det|
    base = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(flow(x), base + logdet)


def test_actnorm_initialises_to_zero_mean_unit_std_and_survives_constant_columns():
    x = torch.randn(500, 3) * torch.tensor([5.0, 0.1, 1.0]) + torch.tensor([2.0, -1.0, 0.0])
    norm = ActNorm(3)
    norm.initialize(x)
    y, logdet = norm(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    assert logdet.shape == (500,)
    const = torch.ones(10, 2)
    norm2 = ActNorm(2)
    norm2.initialize(const)
    assert torch.isfinite(norm2.log_scale).all()


def test_flow_initialize_normalises_every_actnorm_input():
    torch.manual_seed(0)
    flow = glow_flow(6, n_blocks=3, hidden_sizes=(16, 16))
    x = torch.randn(2000, 6) * 7 + 3
    flow.initialize(x)
    flow.eval()
    h = x
    for t in flow.transforms:
        if isinstance(t, ActNorm):
            out, _ = t(h)
            torch.testing.assert_close(out.mean(0), torch.zeros(6), atol=1e-3, rtol=0)
        h, _ = t(h)


def test_permutation_and_lu_are_invertible_with_correct_logdet():
    perm = Permutation(torch.tensor([2, 0, 1]))
    x = torch.randn(4, 3, dtype=torch.float64)
    y, ld = perm(x)
    torch.testing.assert_close(perm.inverse(y), x)
    assert (ld == 0).all()
    lu = LUPermutation(3, generator=torch.Generator().manual_seed(1)).double()
    y, ld = lu(x)
    torch.testing.assert_close(lu.inverse(y), x)
    torch.testing.assert_close(ld, _autograd_logdet(lu, x))


def test_default_architecture_matches_the_papers_parameter_count():
    """8 blocks, subnets (512, 512, 512), 128-d features: about 10.0 M parameters (the paper's)."""
    flow = glow_flow(128)
    n_params = sum(p.numel() for p in flow.parameters())
    assert math.isclose(n_params, 10.0e6, rel_tol=0.02)
    assert sum(isinstance(m, torch.nn.Linear) for m in flow.transforms[2].net1) == 4


def test_sample_is_finite_and_right_shape():
    torch.manual_seed(0)
    flow = glow_flow(3, n_blocks=2, hidden_sizes=(8, 8)).eval()
    s = flow.sample(7, generator=torch.Generator().manual_seed(0))
    assert s.shape == (7, 3) and torch.isfinite(s).all()


def test_pinned_columns_add_independent_gaussians_to_the_flow_density():
    """log p(x) = flow(x without the pinned columns) + sum of N(loc, scale^2) log-densities."""
    torch.manual_seed(0)
    flow = glow_flow(3, n_blocks=2, hidden_sizes=(8, 8)).double().eval()
    reference = glow_flow(3, n_blocks=2, hidden_sizes=(8, 8)).double().eval()
    reference.load_state_dict(flow.state_dict())
    pinned, loc, scale = torch.tensor([1, 4]), torch.tensor([2.0, -1.0]), torch.tensor([0.1, 0.5])
    flow.pin_columns(5, pinned, loc, scale)
    flow.double()
    x = torch.randn(7, 5, dtype=torch.float64)
    free = x[:, [0, 2, 3]]
    expected = reference.log_prob(free) + Normal(loc.double(), scale.double()).log_prob(
        x[:, pinned]
    ).sum(dim=1)
    torch.testing.assert_close(flow.log_prob(x), expected)
    z, _ = flow.transform(x)  # the transforms see only the free columns
    torch.testing.assert_close(flow.inverse(z), free)
    draws = flow.sample(4000, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (4000, 5)
    torch.testing.assert_close(draws[:, pinned].mean(0), loc.double(), atol=0.03, rtol=0)
    torch.testing.assert_close(draws[:, pinned].std(0), scale.double(), atol=0.03, rtol=0)


def test_a_flow_pickled_before_pinned_columns_existed_still_scores():
    import pickle

    flow = glow_flow(3, n_blocks=1, hidden_sizes=(4,)).eval()
    x = torch.randn(5, 3)
    expected = flow.log_prob(x)
    for name in ("flow_columns", "pinned_columns", "pinned_loc", "pinned_scale"):
        del flow._buffers[name]  # the buffers a 0.1.0 flow did not have
    torch.testing.assert_close(pickle.loads(pickle.dumps(flow)).log_prob(x), expected)
