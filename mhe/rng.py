"""Random number generators: every state as weights_only-safe data, and blocks that leave them untouched.

A resumable checkpoint stores :func:`capture_rng_state` of every process; :func:`isolated_rng` seeds all
generators for a block (an evaluation, a figure) and puts the outer streams back afterwards, so that
evaluating in the middle of training neither changes the training run nor depends on where it happens.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from mhe.utils import seed_everything


def capture_rng_state() -> dict[str, Any]:
    """The state of every RNG this process uses, as tensors and primitives."""
    np_state = np.random.get_state(legacy=True)
    if not isinstance(np_state, tuple):  # the global legacy RandomState is always MT19937
        raise TypeError(f"numpy's global RNG state is not the legacy MT19937 tuple: {type(np_state).__name__}")
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # NumPy's MT19937 key (624 uint32) as a tensor; int64 holds uint32 exactly
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every RNG back to ``state`` (from :func:`capture_rng_state`)."""
    torch.set_rng_state(state["torch"].cpu())
    npk = state["numpy"]
    np.random.set_state(
        ("MT19937", npk["key"].numpy().astype(np.uint32), npk["pos"], npk["has_gauss"], npk["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


@contextlib.contextmanager
def isolated_rng(seed: int | None) -> Iterator[None]:
    """Seed every RNG with ``seed`` for the block and restore the previous states after it (``None``:
    leave the generators alone).

    Evaluation samples hypotheses; isolating it keeps the training stream (and so resumption) unchanged
    and makes numbers comparable across epochs and reproducible from the command line.
    """
    if seed is None:
        yield
        return
    state = capture_rng_state()
    try:
        seed_everything(seed)
        yield
    finally:
        restore_rng_state(state)
