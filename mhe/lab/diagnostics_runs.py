"""The committed diagnostics tables: which models, items and settings make them, and reading choices back.

:mod:`mhe.diagnostics` holds the measures (ESS, ground-truth likelihood, calibration, selection by extra
evidence, the flip mixture's temperature scaling) as functions of a model and data. This module is the lab
side: the settings of the tables in ``figures/`` (:data:`DIAGNOSTICS_SETTINGS`), the fresh test split they
are measured on (:func:`test_split`), the whole table for a set of models (:func:`diagnostics_table`, what
``tools/diagnostics.py`` writes to ``figures/04_hand_diagnostics.csv`` and ``figures/05_body_diagnostics.csv``),
and the choices made on validation read back from their committed tables: the sampling temperature of each
model's selection (:func:`selection_temperatures`, from ``tools/selection_validation.py``) and the flip
mixture's temperature (:func:`flip_temperature_choice`, from ``tools/flip_calibration.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mhe.diagnostics import diagnose_model

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "DIAGNOSTICS_SETTINGS",
    "FLIP_CALIBRATION_CSV",
    "SELECTION_VALIDATION_CSV",
    "diagnostics_table",
    "flip_temperature_choice",
    "selection_temperatures",
    "test_split",
]


# The settings of the committed diagnostics tables (tools/diagnostics.py, notebook 07), per body kind: the
# shipped models; the test items (the first n of the fresh test split, data seed 1, as in the metrics tables);
# the official sampling's S (T = 0.8 for both); the noise (mm, per coordinate) of the noisy second view, about
# a fifth of the mode's error (hands ~25 mm, bodies ~110 mm); the joints whose depths are given (hands: the five
# fingertips; bodies: ankles, head and wrists); the ambiguous subset's name; the CSV in figures/.
DIAGNOSTICS_SETTINGS: dict[str, dict[str, Any]] = {
    "hand": dict(models=("mhentropy", "mhentropy_rot", "mhentropy_aa", "mhentropy_tempered", "no_entropy", "nll",
                         "min_of_n", "deterministic"),
                 items=500, samples=200, noise_mm=5.0, depth_joints=(16, 17, 18, 19, 20), subset="occluded",
                 csv="04_hand_diagnostics.csv"),
    "body": dict(models=("mhentropy", "mhentropy_3d", "mhentropy_long", "mhentropy_tempered", "prohmr_2d", "nll",
                         "nll_3d", "min_of_n", "deterministic"),
                 items=500, samples=25, noise_mm=25.0, depth_joints=(3, 6, 10, 13, 16), subset="ambiguous",
                 csv="05_body_diagnostics.csv"),
}


# The validation tables of selection (tools/selection_validation.py), per body kind, in figures/.
SELECTION_VALIDATION_CSV = {"hand": "07_selection_validation.csv"}


def selection_temperatures(body: str, path: str | Path | None = None) -> dict[str, float]:
    """The sampling temperature each model's selection works on, chosen on the validation split: per model
    of the validation table (``path``; default: the committed ``figures/`` table of ``body``, see
    :data:`SELECTION_VALIDATION_CSV`), the temperature at which the hypothesis picked by the side view has
    the lowest MPJPE on the ambiguous subset. Keys are the models' short names (``hand_mhentropy`` →
    ``mhentropy``); a body kind without a table gives ``{}`` (the official T = 0.8 then applies)."""
    import pandas as pd

    from mhe.utils import REPO_ROOT

    if path is None:
        if body not in SELECTION_VALIDATION_CSV:
            return {}
        path = REPO_ROOT / "figures" / SELECTION_VALIDATION_CSV[body]
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: it holds the {body} models' selection temperatures chosen on "
                                    f"validation; write it with `python tools/selection_validation.py`")
    frame = pd.read_csv(path)
    rows = frame[frame["subset"] == DIAGNOSTICS_SETTINGS[body]["subset"]]
    best = rows.loc[rows.groupby("model")["selected_side_view"].idxmin()]
    return {str(m).removeprefix(f"{body}_"): float(t) for m, t in zip(best["model"], best["temperature"], strict=True)}


# The validation table of the flip mixture's temperature scaling (tools/flip_calibration.py), in figures/.
FLIP_CALIBRATION_CSV = "04_flip_calibration.csv"

def flip_temperature_choice(model: str, path: str | Path | None = None) -> float:
    """The flip temperature chosen on validation for ``model`` (a name in the table's ``model`` column, e.g.
    ``hand_mhentropy_rot``): the one with the highest ground-truth log-likelihood in ``path`` (default: the
    committed ``figures/`` table, :data:`FLIP_CALIBRATION_CSV`)."""
    import pandas as pd

    from mhe.utils import REPO_ROOT

    path = REPO_ROOT / "figures" / FLIP_CALIBRATION_CSV if path is None else Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: it holds the flip temperatures chosen on validation; write it "
                                f"with `python tools/flip_calibration.py`")
    frame = pd.read_csv(path)
    rows = frame[frame["model"] == model]
    if rows.empty:
        raise KeyError(f"{path} has no rows for {model!r} (it has {sorted(frame['model'].unique())}); run "
                       f"`python tools/flip_calibration.py {model} --append`")
    return float(rows.loc[rows["gt_log_lik"].idxmax(), "flip_temperature"])


def test_split(body: str, items: int | None = None, *, cached: bool = True):
    """The first ``items`` (default: the setting's) of the fresh test split (data seed 1) of ``body`` ("hand":
    :class:`mhe.data.SyntheticHands` with occlusion 0.4; "body": :class:`mhe.data.synthetic_bodies.SyntheticBodies`),
    as in the metrics tables. ``cached=False`` generates only those items (no disk cache; the same items), a hand
    once: it is kept in memory for the next read."""
    from torch.utils.data import Subset

    from mhe.utils import data_dir

    if body not in DIAGNOSTICS_SETTINGS:
        raise ValueError(f"body must be one of {tuple(DIAGNOSTICS_SETTINGS)}, got {body!r}")
    n = int(items if items is not None else DIAGNOSTICS_SETTINGS[body]["items"])
    # item i depends on (split, seed, i) only: the cached 500-item split serves any n <= 500
    cache, size = (data_dir() / "cache", max(n, 500)) if cached else (None, n)
    if body == "hand":
        from mhe.data import SyntheticHands

        test = SyntheticHands("test", size=size, seed=1, occlusion=0.4, cache=True, cache_dir=cache, progress=False)
    else:
        from mhe.data.synthetic_bodies import SyntheticBodies

        test = SyntheticBodies("test", size=size, seed=1, cache_dir=cache, progress=False)
    return Subset(test, range(n))


def diagnostics_table(body: str, models: Mapping[str, Any], items: int | None = None, *, cached: bool = True,
                      calibration_samples: int = 200, temperatures: Mapping[str, float] | None = None,
                      log: Callable[[str], None] | None = print):
    """:func:`diagnose_model` of ``models`` (``{name: model}``, e.g. the shipped ``body`` models from
    :func:`mhe.lab.experiments.load_model`) on the fresh test split (:func:`test_split`) → a DataFrame, one row
    per (model, subset), with the settings of :data:`DIAGNOSTICS_SETTINGS` for ``body`` ("hand" or "body").

    Hands: the occluded subset is :func:`mhe.data.occluded_hands`; bodies: the data's ``ambiguous``
    flag. The ESS target's Laplace scale is the packaged MHEntropy config's, for every model. ``cached=False``
    generates the items without the disk cache (the same items; for a few of them). Each model's selection
    samples at its ``temperatures`` entry (default: :func:`selection_temperatures`, chosen on validation),
    else at the official T = 0.8; the row's ``temperature`` says which.
    """
    import pandas as pd
    from torch.utils.data import DataLoader

    from mhe.config import ConfigError
    from mhe.evaluation import EVAL_BATCH_SIZE, EVAL_SEED, EVAL_TEMPERATURE
    from mhe.lab.config_io import load_config

    s = DIAGNOSTICS_SETTINGS.get(body)
    if s is None:
        raise ValueError(f"body must be one of {tuple(DIAGNOSTICS_SETTINGS)}, got {body!r}")
    subset: Callable[[Tensor], Tensor] | None = None
    if body == "hand":
        from mhe.data import occluded_hands

        subset = occluded_hands
    loader = DataLoader(test_split(body, items, cached=cached), batch_size=EVAL_BATCH_SIZE)
    b = load_config(f"{body}_mhentropy").objective.b  # the packaged configs set it (the official 0.03)
    if b is None:
        raise ConfigError(f"the packaged {body}_mhentropy config leaves objective.b unset: the diagnostics need its "
                          f"Laplace scale; set objective.b (official: 0.03) in mhe/configs/{body}_mhentropy.yaml")
    temperatures = selection_temperatures(body) if temperatures is None else temperatures
    rows = []
    for name, model in models.items():
        for row in diagnose_model(model, loader, subset=subset, subset_name=s["subset"], b=b, num_samples=s["samples"],
                                  temperature=temperatures.get(name, EVAL_TEMPERATURE),
                                  calibration_samples=calibration_samples,
                                  depth_joints=s["depth_joints"], noise_mm=s["noise_mm"], seed=EVAL_SEED):
            rows.append({"model": name, **row})
            if log is not None:
                log(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()
                              if not k.startswith("calib_occ_")))
    return pd.DataFrame(rows)
