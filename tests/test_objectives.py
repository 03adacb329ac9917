"""Objectives: every term against hand-computed cases, MHEntropy against the closed-form KL of
two Laplace densities, gradient routing (through samples and log q; best-of-S only), and errors."""

from __future__ import annotations

import math

import pytest
import torch

from mhe.objectives import (
    OBJECTIVES,
    Hypotheses,
    MissingInputError,
    ball_prior,
    box_prior,
    deterministic,
    get_objective,
    laplace_log_likelihood,
    mhentropy,
    min_of_n,
    nll,
    prohmr,
    renyi,
)


class FixedModel:
    """A model whose hypotheses are given tensors: pred_obs = params as (B, S, K=D, 1)."""

    def __init__(self, params, log_q, log_prior, joints_3d=None, log_prob=None):
        self.params, self.log_q, self.log_prior = params, log_q, log_prior
        self.joints_3d, self._log_prob = joints_3d, log_prob

    def _hyp(self, params, log_q, log_prior):
        return Hypotheses(params, log_q, params.unsqueeze(-1), log_prior, joints_3d=self.joints_3d,
                          source="FixedModel")

    def hypotheses(self, batch, num_samples, temperature=1.0):
        assert num_samples == self.params.shape[1]
        return self._hyp(self.params, self.log_q, self.log_prior)

    def mode(self, batch):
        return self._hyp(self.params[:, :1], self.log_q[:, :1], self.log_prior[:, :1])

    def log_prob(self, batch, params):
        return self._log_prob


def _batch(obs, visible=None):
    obs = torch.as_tensor(obs, dtype=torch.float32)
    if visible is None:
        visible = torch.ones(obs.shape[:2], dtype=torch.bool)
    return {"obs": obs.unsqueeze(-1), "visible": torch.as_tensor(visible)}


# -- terms ----------------------------------------------------------------------------------------


def test_laplace_log_likelihood_hand_case():
    # obs (1, 3, 2); two hypotheses; keypoint 1 occluded.
    obs = torch.tensor([[[1.0, 0.0], [5.0, 5.0], [0.0, -1.0]]])
    pred = torch.zeros(1, 2, 3, 2)
    pred[0, 1] = torch.tensor([[1.0, 0.0], [-9.0, 9.0], [0.5, -1.0]])
    visible = torch.tensor([[True, False, True]])
    b = 0.5
    got = laplace_log_likelihood(pred, obs, visible, b)
    # hypothesis 0: |errors| on visible coords = 1, 0, 0, 1 -> -(2)/0.5 - 4·log(1) = -4
    # hypothesis 1: |errors| = 0, 0, 0.5, 0 -> -0.5/0.5 = -1
    assert torch.allclose(got, torch.tensor([[-4.0, -1.0]]))
    # with b = 0.25 the constant -log(2b) = log 2 per visible coordinate appears
    got = laplace_log_likelihood(pred, obs, visible, 0.25)
    assert torch.allclose(got, torch.tensor([[-8.0 + 4 * math.log(2), -2.0 + 4 * math.log(2)]]))


def test_occluded_keypoints_contribute_nothing_even_if_non_finite():
    obs = torch.zeros(1, 2, 1)
    pred = torch.tensor([[[[0.2], [float("nan")]]]])
    got = laplace_log_likelihood(pred, obs, torch.tensor([[True, False]]), 0.1)
    assert torch.allclose(got, torch.tensor([[-2.0 - math.log(0.2)]]))


def test_box_prior_hand_case():
    x = torch.tensor([[0.5, -3.0, 4.0], [1.0, 0.0, -2.0]])
    # row 0: relu(0.5-1)=0, relu(3/2-1)=0.5, relu(4/2-1)=1  -> -w(0.25+1)
    got = box_prior(x, torch.tensor([1.0, 2.0, 2.0]), weight=2.0)
    assert torch.allclose(got, torch.tensor([-2.5, 0.0]))
    assert box_prior(torch.tensor([3.0]), 1.0, 50.0).item() == pytest.approx(-200.0)


def test_ball_prior_hand_case():
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    got = ball_prior(x, radius=2.5, weight=5.0)  # ‖x‖ = 5 -> relu(2-1)² = 1; inside -> 0
    assert torch.allclose(got, torch.tensor([-5.0, 0.0]))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: laplace_log_likelihood(torch.zeros(1, 1, 2, 1), torch.zeros(1, 2, 1),
                                        torch.ones(1, 2, dtype=bool), 0.0), "b must be > 0"),
        (lambda: laplace_log_likelihood(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1),
                                        torch.ones(1, 2, dtype=bool), 1.0), "pred must have shape"),
        (lambda: laplace_log_likelihood(torch.zeros(1, 1, 2, 1), torch.zeros(1, 3, 1),
                                        torch.ones(1, 2, dtype=bool), 1.0), "obs must have shape"),
        (lambda: laplace_log_likelihood(torch.zeros(1, 1, 2, 1), torch.zeros(1, 2, 1),
                                        torch.ones(1, 3, dtype=bool), 1.0), "visible must have shape"),
        (lambda: box_prior(torch.zeros(2), 0.0, 1.0), "half_width"),
        (lambda: ball_prior(torch.zeros(2), -1.0, 1.0), "radius"),
    ],
)
def test_term_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- objectives -----------------------------------------------------------------------------------


def _fixed():
    # B = 1, S = 2, D = K = 2, d = 1; obs = (0, 1), b = 0.5.
    params = torch.tensor([[[0.0, 1.0], [1.0, 2.0]]], requires_grad=True)
    log_q = torch.tensor([[-1.0, -3.0]], requires_grad=True)
    log_prior = torch.tensor([[0.0, -2.0]], requires_grad=True)
    return FixedModel(params, log_q, log_prior), _batch([[0.0, 1.0]])


def test_mhentropy_hand_case_and_ablation_weights():
    model, batch = _fixed()
    # -loglik per hypothesis: |err|/0.5 + 2·log(1) -> hyp 0: 0, hyp 1: (1+1)/0.5 = 4; mean 2
    # -log prior: mean(0, 2) = 1;  log q: mean(-1, -3) = -2
    loss, terms = mhentropy(model, batch, num_samples=2, b=0.5)
    assert loss.item() == pytest.approx(2 + 1 - 2)
    assert terms == pytest.approx({"reconstruction": 2.0, "prior": 1.0, "entropy": 2.0, "loss": 1.0})
    expected = {"no_entropy": 3.0, "no_reconstruction": -1.0, "no_prior": 0.0}
    for name, value in expected.items():
        assert OBJECTIVES[name](model, batch, num_samples=2, b=0.5)[0].item() == pytest.approx(value)
    weighted = mhentropy(model, batch, num_samples=2, b=0.5, w_rec=2.0, w_prior=3.0, w_ent=0.5)[0]
    assert weighted.item() == pytest.approx(2 * 2 + 3 * 1 + 0.5 * -2)


def test_mhentropy_gradients_flow_through_samples_and_log_q():
    model, batch = _fixed()
    loss, _ = mhentropy(model, batch, num_samples=2, b=0.5, w_ent=0.7)
    loss.backward()
    # d/d log_q of mean(w_ent · log q) = w_ent / S (no stop-gradient on log q)
    assert torch.allclose(model.log_q.grad, torch.full((1, 2), 0.35))
    # d/d params of mean |params - obs| / b: sign(err) / (b · S) on each coordinate
    # (hyp 0 sits exactly on obs, where the subgradient of |·| is 0)
    assert torch.allclose(model.params.grad, torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]))
    assert torch.allclose(model.log_prior.grad, torch.full((1, 2), -0.5))


class LaplaceModel:
    """q(θ | y) = Laplace(y, s) in 1D, reparameterised; prior flat."""

    def __init__(self, s):
        self.s = s

    def hypotheses(self, batch, num_samples, temperature=1.0):
        y = batch["obs"][:, 0, 0]
        u = torch.rand(y.shape[0], num_samples) - 0.5
        eps = -u.sign() * torch.log1p(-2 * u.abs())  # inverse-CDF Laplace(0, 1) noise
        theta = y[:, None] + self.s * eps
        log_q = -(theta - y[:, None]).abs() / self.s - math.log(2 * self.s)
        return Hypotheses(theta.unsqueeze(-1), log_q, theta[..., None, None], torch.zeros_like(log_q))


@pytest.mark.parametrize("s", [0.05, 0.1, 0.3])
def test_mhentropy_is_the_kl_to_the_posterior(s):
    """With a flat prior the posterior is Laplace(y, b) and normalised, so the loss is exactly
    KL(Laplace(y, s) || Laplace(y, b)) = log(b/s) + s/b - 1 (closed form), zero when s = b."""
    b = 0.1
    batch = _batch(torch.randn(64, 1))
    loss, _ = mhentropy(LaplaceModel(s), batch, num_samples=2000, b=b)
    kl = math.log(b / s) + s / b - 1
    assert loss.item() == pytest.approx(kl, abs=0.03)



def test_renyi_hand_case_and_its_reverse_kl_limit():
    model, batch = _fixed()
    # log w = loglik + log prior - log q per hypothesis (b = 0.5): hyp 0: 0 + 0 + 1 = 1, hyp 1: -4 - 2 + 3 = -3
    loss, terms = renyi(model, batch, num_samples=2, b=0.5, alpha=0.5)
    bound = 2.0 * math.log((math.exp(0.5) + math.exp(-1.5)) / 2)  # 1/(1-α) · log mean w^(1-α)
    assert loss.item() == pytest.approx(-bound)
    norm = torch.softmax(torch.tensor([0.5, -1.5]), 0)
    assert terms["ess"] == pytest.approx(float(1 / norm.square().sum()))
    assert terms["bound"] == pytest.approx(bound)
    # α = 1 is MHEntropy (reverse KL), term for term; α → 1 approaches it
    kl_loss, kl_terms = mhentropy(model, batch, num_samples=2, b=0.5, w_ent=0.7, w_prior=2.0)
    r_loss, r_terms = renyi(model, batch, num_samples=2, b=0.5, w_ent=0.7, w_prior=2.0, alpha=1.0)
    assert r_loss.item() == pytest.approx(kl_loss.item())
    assert r_terms["ess"] == 2.0
    near = renyi(model, batch, num_samples=2, b=0.5, w_ent=0.7, w_prior=2.0, alpha=1.0 - 1e-4)[0]
    assert near.item() == pytest.approx(kl_loss.item(), abs=1e-3)
    # α = 0: the importance-weighted bound log mean w
    iw = renyi(model, batch, num_samples=2, b=0.5, alpha=0.0)[0]
    assert iw.item() == pytest.approx(-math.log((math.exp(1.0) + math.exp(-3.0)) / 2))
    assert OBJECTIVES["renyi"] is renyi
    with pytest.raises(ValueError, match="alpha must be"):
        renyi(model, batch, num_samples=2, alpha=-0.5)


@pytest.mark.parametrize("s, alpha", [(0.03, 0.5), (0.3, 0.5), (0.05, 0.8), (0.3, 0.2)])
def test_renyi_is_the_renyi_divergence_to_the_posterior(s, alpha):
    """With a flat prior the posterior is Laplace(y, b), normalised, so the loss estimates D_α(Laplace(y, s) ||
    Laplace(y, b)) = log ∫ q^α p^(1-α) / (α - 1), in closed form (2s)^-α (2b)^(α-1) · 2 / (α/s + (1-α)/b)."""
    b = 0.1
    torch.manual_seed(0)
    batch = _batch(torch.randn(64, 1))
    loss, _ = renyi(LaplaceModel(s), batch, num_samples=4000, b=b, alpha=alpha)
    integral = (2 * s) ** -alpha * (2 * b) ** (alpha - 1) * 2 / (alpha / s + (1 - alpha) / b)
    assert loss.item() == pytest.approx(math.log(integral) / (alpha - 1), abs=0.02)


def test_three_d_term_hand_case_and_errors():
    model, batch = _fixed()
    model.joints_3d = torch.ones(1, 2, 1, 3)
    batch["joints_3d"] = torch.zeros(1, 1, 3)
    loss, terms = mhentropy(model, batch, num_samples=2, b=0.5, w_3d=2.0)
    assert terms["l1_3d"] == pytest.approx(1.0) and loss.item() == pytest.approx(1.0 + 2.0)
    _, terms = deterministic(model, batch, b=0.5, w_3d=1.0)
    assert terms["l1_3d"] == pytest.approx(1.0)
    del batch["joints_3d"]
    with pytest.raises(MissingInputError, match=r"w_3d \(weight 1\) needs batch\['joints_3d'\].*set that weight to 0"):
        mhentropy(model, batch, num_samples=2, w_3d=1.0)
    batch["joints_3d"] = torch.zeros(1, 1, 3)
    model.joints_3d = None
    with pytest.raises(KeyError, match=r"w_3d \(weight 1\) needs the hypotheses' joints_3d, which FixedModel does not"):
        min_of_n(model, batch, num_samples=2, w_3d=1.0)


def test_nll_hand_case():
    model, batch = _fixed()
    model._log_prob = torch.tensor([-1.0, -2.0, 0.5])
    batch = {**_batch([[0.0, 1.0]] * 3), "params": torch.zeros(3, 2)}
    loss, terms = nll(model, batch, w_nll=2.0)
    assert loss.item() == pytest.approx(2.0 * (3.0 - 0.5) / 3)
    assert set(terms) == {"nll", "loss"}
    # keypoints on the mode (hypothesis 0, which fits obs (0, 1) exactly): with b = 0.5 the
    # -loglik is only the constant 2·log(2b) = 0.
    model._log_prob = torch.tensor([-1.0])
    batch = {**_batch([[0.0, 1.0]]), "params": torch.zeros(1, 2)}
    _, terms = nll(model, batch, w_keypoints=1.0, b=0.5)
    assert terms["keypoints"] == pytest.approx(0.0) and terms["loss"] == pytest.approx(1.0)
    with pytest.raises(KeyError, match="params"):
        nll(model, _batch([[0.0, 1.0]]))


def test_min_of_n_fits_only_the_best_hypothesis():
    model, batch = _fixed()
    batch = _batch([[1.0, 1.5]])  # hyp 0 (0, 1): err 1.5; hyp 1 (1, 2): err 0.5 -> best
    loss, terms = min_of_n(model, batch, num_samples=2, b=0.5, w_prior=0.0)
    assert terms["reconstruction"] == pytest.approx(0.5 / 0.5)
    loss.backward()
    assert torch.all(model.params.grad[0, 0] == 0)
    assert torch.allclose(model.params.grad[0, 1], torch.tensor([0.0, 2.0]))
    _, terms = min_of_n(model, batch, num_samples=2, b=0.5)
    assert terms["prior"] == pytest.approx(1.0) and terms["loss"] == pytest.approx(2.0)


def test_deterministic_uses_the_mode():
    model, batch = _fixed()
    batch = _batch([[1.0, 1.0]])  # mode = hyp 0 (0, 1): err 1 -> 1/0.5 = 2; prior 0
    loss, terms = deterministic(model, batch, b=0.5)
    assert terms == pytest.approx({"reconstruction": 2.0, "prior": 0.0, "loss": 2.0})


def test_registry_and_errors():
    assert {"mhentropy", "no_entropy", "no_reconstruction", "no_prior", "nll", "min_of_n",
            "deterministic"} <= set(OBJECTIVES)
    assert get_objective("nll") is nll
    with pytest.raises(ValueError, match="unknown objective"):
        get_objective("elbo")
    model, _ = _fixed()
    with pytest.raises(KeyError, match="'visible'"):
        mhentropy(model, {"obs": torch.zeros(1, 2, 1)}, num_samples=2)


# only the named weight on (and ProHMR's mode keypoints, which every batch can score)
_ONLY = dict(w_nll=0.0, w_2d_mode=0.01, w_2d_samples=0.0, w_3d_mode=0.0, w_3d_samples=0.0, w_params=0.0, w_betas=0.0,
             w_ortho=0.0, w_prior=0.0)


@pytest.mark.parametrize("weight, value, batch_key, message", [
    ("w_nll", 1e-3, "params", r"the NLL term w_nll \(weight 0.001\) needs batch\['params'\]"),
    ("w_params", 1e-3, "params", r"the parameter term w_params \(weight 0.001\) needs batch\['params'\]"),
    ("w_betas", 5e-4, "betas", r"the shape term w_betas \(weight 0.0005\) needs batch\['betas'\]"),
    ("w_3d_mode", 0.05, "joints_3d_mm", r"w_3d_mode \(weight 0.05\) needs batch\['joints_3d_mm'\]"),
    ("w_3d_samples", 0.05, "joints_3d_mm", r"w_3d_samples \(weight 0.05\) needs batch\['joints_3d_mm'\]"),
])
def test_prohmr_refuses_a_weighted_term_whose_batch_input_is_missing(weight, value, batch_key, message):
    model, batch = _fixed()
    with pytest.raises(MissingInputError, match=message + r".*set that weight to 0"):
        prohmr(model, batch, num_samples=2, **{**_ONLY, weight: value})
    with pytest.raises(ValueError, match=message):  # also a ValueError (and a KeyError), as before
        prohmr(model, batch, num_samples=2, **{**_ONLY, weight: value})
    loss, terms = prohmr(model, batch, num_samples=2, **_ONLY)  # the weight at 0: the term is dropped
    assert torch.isfinite(loss) and set(terms) == {"kp2d_mode", "loss"}
    assert batch_key not in batch


@pytest.mark.parametrize("weight, value, batch_extra, message", [
    ("w_ortho", 0.1, {}, r"the orthonormality term w_ortho \(weight 0.1\) needs the hypotheses' orthonormality, "
                         r"which FixedModel does not give"),
    ("w_betas", 5e-4, {"betas": torch.zeros(1, 10)}, r"the shape term w_betas \(weight 0.0005\) needs the "
                                                     r"hypotheses' betas, which FixedModel does not give"),
    ("w_3d_mode", 0.05, {"joints_3d_mm": torch.zeros(1, 2, 3)},
     r"kp3d_mode \(w_3d_mode\) \(weight 0.05\) needs the hypotheses' joints_metric, which FixedModel"),
    ("w_params", 1e-3, {"params": torch.zeros(1, 2)}, r"w_params \(weight 0.001\) needs a model with flow_target .*, "
                                                      r"which FixedModel lacks; set objective.w_params=0"),
])
def test_prohmr_refuses_a_weighted_term_the_model_gives_no_input_for(weight, value, batch_extra, message):
    """Earlier, these terms were silently skipped when the model lacked what they score."""
    model, batch = _fixed()
    with pytest.raises(MissingInputError, match=message):
        prohmr(model, {**batch, **batch_extra}, num_samples=2, **{**_ONLY, weight: value})

