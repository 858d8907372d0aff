"""ROSEScorer and VAEDetector: the math against brute force, the paper's toy, the contract."""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from torch import nn
from torch.distributions import Normal, kl_divergence

from skood import QuantileFlowDetector, ROSEScorer, VAEDetector
from skood.metrics import auroc
from skood.nn.fisher import (
    DiagCurvature,
    EKFACCurvature,
    kronecker_factors,
    per_sample_grads,
)
from skood.nn.vae import VAE, conv_vae_networks, mlp_vae_networks
from tests._helpers import assert_float32_close


class _Fitted(BaseEstimator):
    """A prefit 'estimator' around a hand-built module (what a user wrapping their own does)."""

    def __init__(self, module=None):
        self.module = module

    def fit(self, X=None, y=None):
        self.module_ = self.module
        self.n_features_in_ = None if X is None else X.shape[1]
        return self


class _TinyRegressionDensity(nn.Module):
    """log N(x[:, 2:] ; f(x[:, :2]), I) with f = Linear -> tanh -> Linear: two EKFAC layers."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2, 3), nn.Linear(3, 2)

    def log_prob(self, x):
        mean = self.fc2(torch.tanh(self.fc1(x[:, :2])))
        return Normal(mean, 1.0).log_prob(x[:, 2:]).sum(1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = _TinyRegressionDensity().double().eval()
    x = torch.randn(40, 4, dtype=torch.float64)
    return model, x


def _loop_grads(model, x, names):
    params = dict(model.named_parameters())
    out = []
    for i in range(x.shape[0]):
        g = torch.autograd.grad(model.log_prob(x[i : i + 1]).sum(), [params[n] for n in names])
        out.append(torch.cat([t.flatten() for t in g]))
    return torch.stack(out)  # (n, P)


# -- per-sample gradients and curvature against brute force ---------------------------------------
def test_vmap_per_sample_gradients_equal_a_loop_of_backward_passes(tiny):
    model, x = tiny
    names = [n for n, _ in model.named_parameters()]
    fn = lambda m, xb: m.log_prob(xb)  # noqa: E731
    fast = per_sample_grads(model, fn, x, names)
    slow = per_sample_grads(model, fn, x, names, method="loop")
    for n in names:
        assert fast[n].shape == (x.shape[0], *dict(model.named_parameters())[n].shape)
        torch.testing.assert_close(fast[n], slow[n])
    brute = _loop_grads(model, x, names)
    torch.testing.assert_close(torch.cat([fast[n].flatten(1) for n in names], 1), brute)


def test_diag_curvature_is_g_over_the_mean_squared_gradient(tiny):
    model, x = tiny
    names = ["fc1.weight", "fc1.bias"]
    grads = per_sample_grads(model, lambda m, xb: m.log_prob(xb), x, names)
    diag = DiagCurvature(names)
    diag.accumulate({k: v[:25] for k, v in grads.items()})
    diag.accumulate({k: v[25:] for k, v in grads.items()})  # in two batches
    diag.finalize(damping=0.0)
    G = _loop_grads(model, x, names)
    fisher = (G**2).mean(0)
    torch.testing.assert_close(diag.fisher_, fisher)
    expected = G @ torch.linalg.solve(torch.diag(fisher), G.T)  # explicit inverse
    torch.testing.assert_close(diag.score(grads), torch.diagonal(expected))


def test_ekfac_matches_the_explicit_eigenbasis_fisher_inverse(tiny):
    """Factors by hand (inputs, output gradients), F = K diag(Sigma) K^T with K = U_A (x) U_B,
    then g^T F^-1 g by an explicit solve: the projection formula must agree."""
    model, x = tiny
    fn = lambda m, xb: m.log_prob(xb)  # noqa: E731
    factors = kronecker_factors(model, fn, x, {"fc2": model.fc2})
    # hand factors: h = [tanh(fc1(x)), 1], delta = d log p / d fc2-output
    h = torch.tanh(model.fc1(x[:, :2])).detach()
    out = model.fc2(h).detach().requires_grad_(True)
    delta = torch.autograd.grad(Normal(out, 1.0).log_prob(x[:, 2:]).sum(), out)[0]
    h1 = torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype)], 1)
    torch.testing.assert_close(factors["fc2"][0], h1.T @ h1)
    torch.testing.assert_close(factors["fc2"][1], delta.T @ delta)

    ek = EKFACCurvature("fc2.weight", "fc2.bias", factors["fc2"])
    grads = per_sample_grads(model, fn, x, ["fc2.weight", "fc2.bias"])
    ek.accumulate(grads)
    ek.finalize(damping=0.0)
    # per-sample G = [dW, db] (out x in+1) = delta h1^T for a Linear layer
    G = torch.cat([grads["fc2.weight"], grads["fc2.bias"].unsqueeze(-1)], 2)
    torch.testing.assert_close(G, delta.unsqueeze(2) * h1.unsqueeze(1))
    u_a, u_b = (
        torch.linalg.eigh(h1.T @ h1).eigenvectors,
        torch.linalg.eigh(delta.T @ delta).eigenvectors,
    )
    # vec(U_B^T G U_A) = (U_A (x) U_B)^T vec(G) with column-major vec
    K = torch.kron(u_a, u_b)
    vecG = G.transpose(1, 2).reshape(len(G), -1)
    sigma = ((vecG @ K) ** 2).mean(0)
    F = K @ torch.diag(sigma) @ K.T
    expected = torch.einsum("np,np->n", vecG, torch.linalg.solve(F, vecG.T).T)
    torch.testing.assert_close(ek.score(grads), expected)


def test_kronecker_factors_of_a_convolution_use_unfolded_patches():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False).double()
    module = nn.Sequential(nn.Unflatten(1, (1, 4, 4)), conv, nn.Flatten()).eval()
    fn = lambda m, xb: -0.5 * m(xb).pow(2).sum(1)  # noqa: E731
    x = torch.randn(5, 16, dtype=torch.float64)
    a, b = kronecker_factors(module, fn, x, {"1": conv})["1"]
    patches = nn.functional.unfold(x.reshape(5, 1, 4, 4), 3, padding=1)  # (5, 9, 16)
    rows = patches.transpose(1, 2).reshape(-1, 9)
    torch.testing.assert_close(a, rows.T @ rows)
    out = conv(x.reshape(5, 1, 4, 4))
    delta = (-out).permute(0, 2, 3, 1).reshape(-1, 2)  # d(-0.5 y^2)/dy = -y
    torch.testing.assert_close(b, delta.T @ delta)
    # and the per-sample conv gradient is sum_t delta_t h_t^T, which EKFAC projects
    g = per_sample_grads(module, fn, x, ["1.weight"])["1.weight"]
    hand = torch.einsum("ntc,ntk->nck", (-out).flatten(2).transpose(1, 2), patches.transpose(1, 2))
    torch.testing.assert_close(g.reshape(5, 2, 9), hand)


# -- the paper's toy example (a Gaussian) ----------------------------------------------------------
class _IsotropicGaussian(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.loc, self.scale = nn.Module(), nn.Module()
        self.loc.mu = nn.Parameter(torch.zeros(d))
        self.scale.log_sigma = nn.Parameter(torch.zeros(()))

    def log_prob(self, x):
        return Normal(self.loc.mu, self.scale.log_sigma.exp()).log_prob(x).sum(1)


def test_isotropic_gaussian_toy_likelihood_fails_and_rose_succeeds():
    rng = np.random.RandomState(0)
    d = 50
    X = rng.normal(size=(2000, d)).astype(np.float32)
    model = _IsotropicGaussian(d)
    with torch.no_grad():  # the MLE
        model.loc.mu.copy_(torch.from_numpy(X.mean(0)))
        model.scale.log_sigma.copy_(torch.tensor(np.log(X.std())))
    X_in = rng.normal(size=(500, d)).astype(np.float32)
    X_out = 0.1 * rng.normal(size=(500, d)).astype(np.float32)
    y = np.r_[np.ones(500), -np.ones(500)]
    nll = model.log_prob(torch.from_numpy(np.r_[X_in, X_out])).detach().numpy()
    assert auroc(y, nll) < 0.01  # the likelihood ranks the shrunken points as more normal
    rose = ROSEScorer(_Fitted(model).fit(X), prefit=True, fisher="diag").fit(X)
    assert rose.layer_names_ == ["loc", "scale"]
    assert auroc(y, rose.score_samples(np.r_[X_in, X_out])) > 0.99
    # in-sample bias: with DIAG, mean S^l over the Fisher rows = the number of parameters
    np.testing.assert_allclose(rose.mu_, [d, 1], rtol=1e-4)


# -- the estimators -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vae(digits_dequantised):
    X_train, _ = digits_dequantised
    return VAEDetector(latent_dim=4, hidden_sizes=(32,), max_epochs=10, random_state=0).fit(X_train)


def test_vae_bound_matches_torch_distributions():
    torch.manual_seed(0)
    enc, dec = mlp_vae_networks(5, 2, (8,))
    vae = VAE(enc, dec, 5, 2, n_mc_samples=4).eval()
    x = torch.randn(6, 5)
    mu, log_var = vae.encode(x)
    q = Normal(mu, (0.5 * log_var).exp())
    z = mu.unsqueeze(1) + q.scale.unsqueeze(1) * vae.noise  # (6, 4, 2)
    px = Normal(dec(z), vae.decoder_scale()).log_prob(x.unsqueeze(1)).sum(-1)
    elbo = px.mean(1) - kl_divergence(q, Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(vae.log_prob(x), elbo)
    log_w = px + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z.transpose(0, 1)).sum(-1).T
    iwae = torch.logsumexp(log_w, 1) - np.log(4)
    torch.testing.assert_close(vae.bound(x, vae.noise, iwae=True), iwae)
    # fixed noise: a row's score does not depend on its batch
    torch.testing.assert_close(vae.log_prob(x[2:3]), vae.log_prob(x)[2:3])


@pytest.mark.parametrize(("shape", "depth"), [((1, 8, 8), 2), ((3, 32, 32), 4), ((1, 16, 12), 2)])
def test_conv_vae_networks_follow_the_paper_and_fit_small_images(shape, depth):
    enc, dec = conv_vae_networks(shape, latent_dim=3, width=4)
    convs = [m for m in enc if isinstance(m, nn.Conv2d)]
    assert len(convs) == depth
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.bias is None for c in convs)
    x = torch.randn(2, int(np.prod(shape)))
    assert enc(x).shape == (2, 6)
    assert dec(torch.randn(2, 3)).shape == x.shape


def test_vae_training_changes_parameters_and_beats_the_untrained_model(
    digits_dequantised, vae, vae_small
):
    X_train, X_test = digits_dequantised
    untrained = VAEDetector(
        **{**vae_small, "latent_dim": 4, "hidden_sizes": (32,), "max_epochs": 1}
    )
    untrained.set_params(lr=1e-12).fit(X_train)  # same init, no real step
    before = dict(untrained.net_.module_.named_parameters())
    for name, p in vae.net_.module_.named_parameters():
        assert not torch.equal(p, before[name]), name
    assert vae.score_samples(X_test).mean() > untrained.score_samples(X_test).mean() + 20
    # held-out digits are more likely than shuffled pixels
    shuffled = np.random.RandomState(0).permutation(X_test.T).T
    y = np.r_[np.ones(len(X_test)), -np.ones(len(X_test))]
    assert auroc(y, vae.score_samples(np.r_[X_test, shuffled])) > 0.9


@pytest.mark.numerics
def test_vae_scores_are_deterministic_batch_independent_and_pickle(
    digits_dequantised, vae, vae_small
):
    X_train, X_test = digits_dequantised
    s = vae.score_samples(X_test)
    assert s.dtype == np.float64 and np.all(np.isfinite(s))
    # a copy at another batch size: the module-scoped fixture is shared and stays as it is
    batched = pickle.loads(pickle.dumps(vae)).set_params(inference_batch_size=7)
    assert_float32_close(batched.score_samples(X_test), s)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(vae)).score_samples(X_test), s)
    assert vae.reconstruct(X_test[:5]).shape == (5, 64)
    small = VAEDetector(**vae_small).fit(X_train).score_samples(X_test)
    np.testing.assert_array_equal(
        VAEDetector(**vae_small).fit(X_train).score_samples(X_test), small
    )
    assert not np.array_equal(
        VAEDetector(**{**vae_small, "random_state": 1}).fit(X_train).score_samples(X_test), small
    )
    # the same model and noise under the importance-weighted bound: close, ranking rows alike
    iwae = copy.deepcopy(vae)
    iwae.net_.module_.iwae = True
    assert np.corrcoef(iwae.score_samples(X_test), s)[0, 1] > 0.99


@pytest.mark.parametrize("fisher", ["diag", "ekfac"])
def test_rose_on_a_vae_detects_dimmed_digits_the_likelihood_prefers(
    digits_dequantised, vae, fisher
):
    """The failure ROSE fixes, on real data: dimmed digits (x 0.5) have a *higher* VAE bound
    than held-out digits, while ROSE ranks them as outliers."""
    X_train, X_test = digits_dequantised
    dimmed = 0.5 * X_test
    y = np.r_[np.ones(len(X_test)), -np.ones(len(X_test))]
    likelihood = auroc(y, vae.score_samples(np.r_[X_test, dimmed]))
    assert likelihood < 0.5
    rose = ROSEScorer(vae, prefit=True, fisher=fisher, random_state=0).fit(X_train)
    # measured: DIAG 0.91, EKFAC 0.66 (layer choice matters, see benchmarks/rose_claim.md)
    assert auroc(y, rose.score_samples(np.r_[X_test, dimmed])) > (0.85 if fisher == "diag" else 0.6)
    kinds = dict(zip(rose.layer_names_, rose.layer_kinds_, strict=True))
    assert kinds["encoder.0"] == ("ekfac" if fisher == "ekfac" else "diag")
    assert kinds["(root)"] == "diag"  # the decoder scale is not a Linear / Conv layer


def test_rose_combination_layer_choice_and_layer_scores(digits_dequantised, vae):
    X_train, X_test = digits_dequantised
    rose = ROSEScorer(
        vae, prefit=True, layers=["encoder.*"], n_fisher_samples=200, random_state=0
    ).fit(X_train)
    assert rose.layer_names_ == ["encoder.0", "encoder.2"] and rose.n_fisher_samples_ == 200
    with pytest.warns(UserWarning, match="in-sample estimate"):
        ROSEScorer(vae, prefit=True, n_fisher_samples=20, random_state=0).fit(X_train)
    raw = rose.layer_scores(X_test)
    assert raw.shape == (len(X_test), 2) and np.all(raw >= 0)
    z = (raw - rose.mu_) / rose.sigma_
    np.testing.assert_allclose(rose.score_samples(X_test), -np.maximum(z.max(1), 0))
    two = rose.set_params(p=2.0, beta=1.0, clip=False)
    np.testing.assert_allclose(two.score_samples(X_test), -np.linalg.norm(z + 1.0, axis=1))
    whole = ROSEScorer(vae, prefit=True, layers=["encoder"], random_state=0).fit(X_train)
    assert whole.layer_names_ == ["encoder"] and whole.layer_kinds_ == ["diag"]


def test_rose_rescores_with_other_combination_parameters_but_refuses_the_stale_threshold(
    digits_dequantised, vae
):
    X_train, X_test = digits_dequantised
    rose = ROSEScorer(
        vae, prefit=True, layers=["encoder.*"], n_fisher_samples=200, random_state=0
    ).fit(X_train)
    X_test = X_test[:50]
    for param, value in [
        ("beta", 1.0),
        ("p", 2.0),
        ("clip", False),
        ("log_prob", lambda module, x: 2.0 * module.log_prob(x)),
    ]:
        other = copy.deepcopy(rose).set_params(**{param: value})
        assert not np.allclose(other.score_samples(X_test), rose.score_samples(X_test)), param
        for method in (other.predict, other.decision_function):
            with pytest.raises(ValueError, match=f"{param}=.*fit again"):
                method(X_test)
    other = copy.deepcopy(rose).set_params(inference_batch_size=7, gradients="loop")
    assert other.predict(X_test).shape == (50,)  # batching reads no score: no false alarm


def test_rose_fits_the_model_unless_prefit_and_holds_out_for_statistics(
    digits_dequantised, vae_small
):
    X_train, X_test = digits_dequantised
    y = np.ones(len(X_train))
    y[:50] = -1
    rose = ROSEScorer(VAEDetector(**vae_small), validation_fraction=0.25, random_state=0)
    rose.fit(X_train, y)
    assert rose.estimator_.n_features_in_ == 64 and rose.n_fisher_samples_ == 712  # 950 * 0.75
    assert rose.estimator.__dict__.get("net_") is None  # the parameter is never fitted
    s_cal = rose.decision_function(X_test)
    assert np.all(np.isfinite(s_cal)) and set(np.unique(rose.predict(X_test))) <= {-1, 1}


def test_rose_on_a_flow_and_gradient_methods_agree(digits_dequantised, flow_tiny):
    X_train, X_test = digits_dequantised
    flow = QuantileFlowDetector(**flow_tiny, random_state=0).fit(X_train + 0.01)
    fast = ROSEScorer(flow, prefit=True, fisher="ekfac", n_fisher_samples=64, random_state=0)
    slow = ROSEScorer(
        flow, prefit=True, fisher="ekfac", n_fisher_samples=64, gradients="loop", random_state=0
    )
    np.testing.assert_allclose(
        fast.fit(X_train).layer_scores(X_test[:20]),
        slow.fit(X_train).layer_scores(X_test[:20]),
        rtol=1e-3,
        atol=1e-3,
    )
    assert "transforms.0" in fast.layer_names_  # ActNorm: a DIAG layer


@pytest.mark.numerics
def test_rose_is_deterministic_and_pickles(digits_dequantised, vae, tmp_path):
    X_train, X_test = digits_dequantised
    a = ROSEScorer(vae, prefit=True, n_fisher_samples=300, random_state=0).fit(X_train)
    b = ROSEScorer(vae, prefit=True, n_fisher_samples=300, random_state=0).fit(X_train)
    s = a.score_samples(X_test)
    np.testing.assert_array_equal(s, b.score_samples(X_test))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(a)).score_samples(X_test), s)
    assert all(
        t.device.type == "cpu"
        for c in a.curvatures_
        for t in vars(c).values()
        if isinstance(t, torch.Tensor)
    )  # loads on a CPU-only machine
    assert_float32_close(a.set_params(inference_batch_size=7).score_samples(X_test), s)


def test_rose_bad_input_gives_clear_errors(digits_dequantised, vae):
    X_train, X_test = digits_dequantised
    with pytest.raises(TypeError, match="no torch module"):
        ROSEScorer(IsolationForest()).fit(X_train)
    with pytest.raises(TypeError, match="no log_prob"):
        ROSEScorer(_Fitted(nn.Linear(64, 1)).fit(X_train), prefit=True).fit(X_train)
    with pytest.raises(ValueError, match=r"'decoder\.9' does not exist.*encoder\.0"):
        ROSEScorer(vae, prefit=True, layers=["decoder.9"]).fit(X_train)
    with pytest.raises(ValueError, match="prefit model was fitted on 64"):
        ROSEScorer(vae, prefit=True).fit(X_train[:, :10])
    with pytest.raises(Exception, match="not fitted"):
        ROSEScorer(VAEDetector(), prefit=True).fit(X_train)
    rose = ROSEScorer(vae, prefit=True, n_fisher_samples=50, random_state=0).fit(X_train)
    with pytest.raises(ValueError, match="64 features"):
        rose.score_samples(X_test[:, :10])
    bad = X_test[:3].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rose.score_samples(bad)
    with pytest.raises(ValueError, match="'fisher' parameter"):
        ROSEScorer(vae, fisher="kfac").fit(X_train)


def test_bench_registry_builds_vae_and_rose():
    from skood.bench import make_detector

    rose = make_detector("rose:fisher=diag,vae_latent_dim=3", random_state=2)
    assert isinstance(rose, ROSEScorer) and rose.fisher == "diag" and rose.random_state == 2
    assert isinstance(rose.estimator, VAEDetector)
    assert rose.estimator.latent_dim == 3 and rose.estimator.random_state == 2
    assert make_detector("vae:bound=iwae", random_state=0).bound == "iwae"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rose_on_a_cuda_model_matches_the_cpu_one_and_pickles_to_cpu_tensors(
    digits_dequantised, vae
):
    X_train, X_test = digits_dequantised
    cpu = ROSEScorer(vae, prefit=True, n_fisher_samples=200, random_state=0).fit(X_train)
    on_gpu = copy.deepcopy(vae)
    on_gpu.net_.module_.to("cuda")
    gpu = ROSEScorer(on_gpu, prefit=True, n_fisher_samples=200, random_state=0).fit(X_train)
    assert next(gpu.estimator_.net_.module_.parameters()).is_cuda
    assert all(
        t.device.type == "cpu"
        for c in gpu.curvatures_
        for t in vars(c).values()
        if isinstance(t, torch.Tensor)
    )
    s = gpu.score_samples(X_test)
    np.testing.assert_allclose(s, cpu.score_samples(X_test), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(gpu)).score_samples(X_test), s, rtol=1e-5)


def test_fisher_is_computed_with_pinned_torch_threads(digits_dequantised, vae, monkeypatch):
    X_train, _ = digits_dequantised
    seen = []
    original = ROSEScorer._build_curvatures

    def spy(self, *args):
        seen.append(torch.get_num_threads())
        return original(self, *args)

    monkeypatch.setattr(ROSEScorer, "_build_curvatures", spy)
    before = torch.get_num_threads()
    ROSEScorer(vae, prefit=True, n_fisher_samples=50, n_threads=1).fit(X_train[:200])
    assert seen == [1] and torch.get_num_threads() == before


def test_the_fitted_model_pickles_while_another_thread_scores_with_it():
    """Dask ships a model to a second worker while the first scores with it: the pickle must not
    see torch.func's swapped-in tensors (it failed with 'Cannot access storage of TensorWrapper'
    and left a cluster's scoring hung)."""
    import threading
    import warnings

    from tests._settings import VAE_CHECKS

    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = ROSEScorer(VAEDetector(**VAE_CHECKS), random_state=0).fit(rng.normal(size=(150, 3)))
    X_new = rng.normal(size=(1000, 3))
    expected = model.score_samples(X_new)
    done, errors, pickled, result = threading.Event(), [], 0, {}

    def score():
        result["scores"] = model.score_samples(X_new)
        done.set()

    thread = threading.Thread(target=score)
    thread.start()
    while not done.is_set():
        try:
            pickle.loads(pickle.dumps(model))
            pickled += 1
        except Exception as exc:  # every failure is the finding
            errors.append(repr(exc))
    thread.join()
    assert pickled > 0 and errors == []
    np.testing.assert_array_equal(result["scores"], expected)
