"""Every shipped model runs on CUDA as far as devices go, checked on a CPU-only machine with fake tensors.

torch's ``FakeTensorMode`` runs a model on tensors that have a shape, a dtype and a device but no numbers.
Here every parameter, buffer and batch tensor is a fake tensor on a device other than the CPU (CUDA where torch
is built with it, else ``meta``: see ``CUDA`` below), so an operation that meets a tensor made on the CPU inside
a model, a prior or a loss (``torch.tensor(...)`` without ``device=``) fails with a device mismatch, as it would
on a GPU, while the test machine needs no GPU (a test below proves the harness catches exactly that).
Data-dependent checks (``if bad.any()``) have no numbers to look at: the code skips them where
``mhe.utils.has_values`` is false (fake and ``meta`` tensors), and the harness fails on any it does not skip.
Scalars read for logging (a loss's ``.item()``) come back as NaN. A module's integer and bool buffers (a
coupling's mask) keep their values: they describe the architecture, not the data.

For each config in ``mhe/configs``, the model is built, moved to the fake device and run through its training
objective (loss and terms) and ``hypotheses`` / ``mode`` / ``predict`` (``predict_chunks`` too), under
``torch.no_grad`` (a CPU-only build of torch has no CUDA autograd engine to record a graph on), so the
backward pass is not checked.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils.data import default_collate

from mhe.utils import has_values

fake_tensor = pytest.importorskip("torch._subclasses.fake_tensor")
FakeTensorMode = fake_tensor.FakeTensorMode
# A CPU-only build of torch cannot index a fake CUDA tensor from Python (``Tensor.__getitem__`` asks for the CUDA
# device guard: "PyTorch is not linked with support for cuda devices"), so there the fake device is ``meta``: as
# foreign to a CPU tensor as CUDA is (the same device-mismatch error, which a test below checks), and the code's
# value checks are skipped on it for the same reason (has_values). A CUDA build of torch runs the fake CUDA device.
CUDA = torch.device("cuda", 0) if torch.backends.cuda.is_built() else torch.device("meta")
CONFIGS = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "mhe" / "configs").glob("*.yaml"))


class _FakeMode(FakeTensorMode):
    """torch's FakeTensorMode, except that a floating-point scalar read from a fake tensor (``loss.item()`` for a
    log) is NaN; a bool or integer one (a Python ``if`` on values) fails, so every such check must be skipped."""

    def dispatch(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if CUDA.type == "meta":  # `torch.tensor(..., device=x.device)` makes a real meta tensor: the fake device's
            args, kwargs = pytree.tree_map(self._adopt, (args, kwargs))
        fakes = [a for a in pytree.tree_leaves((args, kwargs)) if isinstance(a, fake_tensor.FakeTensor)]
        if fakes and all(a.constant is not None for a in fakes):
            # structure only (a coupling's mask and what is computed from it alone): computed for real
            real = func(*pytree.tree_map(_constant, args), **pytree.tree_map(_constant, kwargs))
            return pytree.tree_map(lambda t: _fake_of(self, t, fakes[0].device, t) if isinstance(t, torch.Tensor)
                                   else t, real)
        if func is torch.ops.aten._local_scalar_dense.default:
            if args[0].dtype.is_floating_point:
                return math.nan
            raise AssertionError("a check on values ran on a tensor without values (a fake one): skip it where "
                                 "mhe.utils.has_values(t) is false, as the model code does for meta tensors")
        return super().dispatch(func, types, args, kwargs)

    def _adopt(self, x):
        """A real ``meta`` tensor as a fake one (it has no values either)."""
        if isinstance(x, torch.Tensor) and not isinstance(x, fake_tensor.FakeTensor) and x.device.type == "meta":
            return _fake_of(self, x, x.device)
        return x


def _constant(x):
    return x.constant if isinstance(x, fake_tensor.FakeTensor) else x


def _fake_of(mode, t: torch.Tensor, device: torch.device, constant: torch.Tensor | None = None):
    """A fake tensor on ``device`` with ``t``'s shape, strides and dtype (and ``constant`` as its values)."""
    meta = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
    return fake_tensor.FakeTensor(mode, meta, device, constant=constant)


class FakeCuda:
    """``fake.move(x)`` puts a module or a (nested) batch on a CUDA device that has no numbers (before the block:
    swapping a module's parameters does not go through the block's dispatch modes); ``with fake:`` runs them."""

    def __init__(self) -> None:
        self.mode = _FakeMode(allow_non_fake_inputs=False)

    def __enter__(self) -> FakeCuda:
        self.grad = torch.no_grad()
        self.grad.__enter__()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.mode.__exit__(*exc)
        self.grad.__exit__(*exc)

    def tensor(self, t: torch.Tensor, structure: bool = False) -> torch.Tensor:
        """A fake tensor on the fake device with ``t``'s shape, strides and dtype (made from a ``meta`` tensor: this
        build of torch may have no CUDA at all). ``structure``: a module's integer or bool buffer (a coupling's
        mask, an index table) keeps its values, which say what the architecture is, not what the data are
        (zuko finds a coupling's halves with ``mask.nonzero()``)."""
        keep = structure and not (t.dtype.is_floating_point or t.dtype.is_complex)
        return _fake_of(self.mode, t, CUDA, t.detach().clone() if keep else None)

    def move(self, x):
        if isinstance(x, nn.Module):
            buffers = {id(b) for b in x.buffers()}
            return x._apply(lambda t: self.tensor(t, structure=id(t) in buffers))
        if isinstance(x, torch.Tensor):
            return self.tensor(x)
        if isinstance(x, dict):
            return {k: self.move(v) for k, v in x.items()}
        return x


def test_has_values_is_false_for_fake_and_meta_tensors_only():
    assert has_values(torch.zeros(2))
    assert not has_values(torch.zeros(2, device="meta"))
    fake = FakeCuda()
    with fake:
        assert not has_values(fake.tensor(torch.zeros(2)))


class _MakesACpuTensor(nn.Module):
    """A deliberately broken module: it adds a constant made on the CPU whatever the input's device."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + torch.tensor([1.0, 2.0, 3.0])  # the bug: no device=x.device


class _ChecksValues(nn.Module):
    """A module that branches on values without asking whether there are any."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x > 0).any():
            return x
        return -x


def test_the_harness_catches_a_tensor_made_on_the_cpu():
    fake = FakeCuda()
    module = fake.move(_MakesACpuTensor())
    with fake:
        with pytest.raises(RuntimeError, match="(?i)device"):
            module(fake.tensor(torch.zeros(4, 3)))
        # the fixed module passes, and a zero-dim CPU scalar is allowed (as on a real GPU)
        assert (module.linear(fake.tensor(torch.zeros(4, 3))) + torch.tensor(1.0)).device == CUDA


def test_the_harness_fails_an_unskipped_check_on_values_and_logs_nan():
    fake = FakeCuda()
    with fake:
        x = fake.tensor(torch.zeros(4))
        with pytest.raises(AssertionError, match="skip it where mhe.utils.has_values"):
            _ChecksValues()(x)
        assert math.isnan(x.sum().item())


def _needs_missing_package(name: str) -> str | None:
    """Why config ``name`` cannot be built here (its encoder needs torchvision), or None."""
    from mhe.lab.config_io import load_config

    cfg = load_config(name)
    if cfg.model.encoder == "resnet":
        try:
            import torchvision  # noqa: F401
        except ImportError:
            return "the resnet encoder needs torchvision"
    return None


def _tiny_experiment(name: str):
    """The config's model and objective, and a batch of two training items (tiny cached splits)."""
    from mhe.lab.config_io import load_config
    from mhe.lab.experiments import build_experiment
    from mhe.lab.train import objective_kwargs, resolve_objective

    cfg = load_config(name, ["data.train_size=2", "data.val_size=2", "data.test_size=2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = build_experiment(cfg)
    batch = default_collate([exp.train_set[i] for i in range(2)])
    fn = resolve_objective(cfg.objective.name)
    return exp.model, fn, objective_kwargs(cfg.objective, cfg.train.num_samples), batch


def _recording(model: nn.Module, name: str) -> list[tuple]:
    """From now on, every call of ``model.<name>(batch, n, ...)`` (a method) is recorded as ``(n, what it
    returned)`` in the list returned (an attribute of the instance stands in front of the method)."""
    calls: list[tuple] = []
    method = getattr(model, name)

    def record(batch, *args, **kwargs):
        out = method(batch, *args, **kwargs)
        calls.append((args[0] if args else None, out))
        return out

    object.__setattr__(model, name, record)
    return calls


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_model_keeps_to_one_device(name):
    reason = _needs_missing_package(name)
    if reason:
        pytest.skip(reason)
    model, objective, kwargs, batch = _tiny_experiment(name)
    S = 3
    fake = FakeCuda()
    model, batch = fake.move(model), fake.move(batch)
    with fake:
        model.train()
        loss, terms = objective(model, batch, **kwargs)
        assert loss.device == CUDA and loss.dim() == 0 and terms
        model.eval()
        # predict draws its hypotheses and its mode through the model's own methods: what they return on the way
        # is checked, rather than running them a second time on their own (fake tensors are slow to run)
        drawn, modes = _recording(model, "hypotheses"), _recording(model, "mode")
        out = model.predict(batch, S, 0.8)
        for key, value in out.items():
            assert value.device == CUDA, key
        if not drawn:  # a deterministic model predicts its mode alone
            model.hypotheses(batch, S, 0.8)
        for asked, hyp in drawn:
            assert hyp.pred_obs.device == CUDA and hyp.pred_obs.shape[:2] == (2, asked) and asked >= S - 1
        assert modes and all(mode.pred_obs.device == CUDA for _, mode in modes)
        if hasattr(model, "predict_chunks"):
            parts = list(model.predict_chunks(batch, S, 0.8, 2))
            assert sum(p["xyz_mm"].shape[1] for p in parts) == out["xyz_mm"].shape[1]
