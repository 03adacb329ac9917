"""What the MHEntropy paper (Chen, Yang, Yao, ICCV 2023) reports, to set beside this package's numbers.

The numbers are the paper's, carried over as they are printed there (its tables of HO3D v3 hands and
of Human3.6M / ambiguous Human3.6M bodies); :func:`beside_the_paper` puts them beside the committed CSVs in
notebook 07. The paper's models read images, ours read the visible 2D keypoints; its data are real
(HO3D v3, H36M), ours synthetic with stand-in body models. The columns match in definition (docs/method.md,
"Metrics"), not in difficulty.
"""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["BODY_COUNTERPARTS", "PAPER_BODY_ACCURACY", "PAPER_BODY_DIVERSITY", "PAPER_HAND", "beside_the_paper",
           "paper_tables"]

# Hands, HO3D v3 (the four held-out sequences), S = 200 at T = 0.8: MHEntropy's row.
PAPER_HAND = {"mpjpe_bh": 20.55, "ah": 16.95, "pjd_2d_vis": 3.30, "pjd_3d_occ": 11.93, "rd": 0.28}

# Bodies: PA-MPJPE (mm) of the best of 25 hypotheses on Human3.6M ("all") and its ambiguous subset AH36M.
# (method, supervision) -> (all, ambiguous)
PAPER_BODY_ACCURACY = {
    ("HMR", "2D visible"): (67.4, 85.2),
    ("ProHMR", "2D visible"): (64.3, 82.6),
    ("MHEntropy", "2D visible"): (51.3, 66.4),
    ("ProHMR", "3D"): (36.8, 60.1),
    ("MHEntropy", "3D"): (36.8, 50.6),
    ("3D Multibodies", "3D"): (42.2, 64.2),
}

# Bodies, AH36M: (AH px, PJD 2D-vis px, PJD 3D-occ mm, RD).
PAPER_BODY_DIVERSITY = {
    ("ProHMR", "2D visible"): (10.92, 0.06, 0.26, 0.23),
    ("MHEntropy", "2D visible"): (9.75, 4.56, 64.05, 0.07),
    ("ProHMR", "3D"): (13.38, 3.98, 24.27, 0.16),
    ("MHEntropy", "3D"): (10.73, 4.23, 47.95, 0.09),
}

# Our shipped body models standing for the paper's rows.
BODY_COUNTERPARTS = {
    ("ProHMR", "2D visible"): "prohmr_2d",
    ("MHEntropy", "2D visible"): "mhentropy",
    ("ProHMR", "3D"): "nll_3d",
    ("MHEntropy", "3D"): "mhentropy_3d",
}


def paper_tables() -> dict[str, pd.DataFrame]:
    """The paper's numbers as DataFrames: ``hand`` (one row), ``body_accuracy`` and ``body_diversity``
    (indexed by method and supervision)."""
    acc = pd.DataFrame(PAPER_BODY_ACCURACY, index=["pa_mpjpe_bh", "pa_mpjpe_bh_ambiguous"]).T
    div = pd.DataFrame(PAPER_BODY_DIVERSITY, index=["ah_ambiguous", "pjd_2d_vis_ambiguous", "pjd_3d_occ_ambiguous",
                                                    "rd_ambiguous"]).T
    for frame in (acc, div):
        frame.index.names = ["method", "supervision"]
    return {"hand": pd.DataFrame([PAPER_HAND], index=["MHEntropy (paper, HO3D v3)"]), "body_accuracy": acc,
            "body_diversity": div}


def beside_the_paper(hand_metrics: pd.DataFrame, body_metrics: pd.DataFrame) -> pd.DataFrame:
    """Our numbers (the committed hand and body tables, indexed by model) beside the paper's
    (:func:`paper_tables`): one row per (setting, paper row, metric) with ``ours``, ``our_model`` and ``paper``."""
    paper = paper_tables()
    rows = []
    for metric, value in paper["hand"].iloc[0].items():
        rows.append({"setting": "hands", "paper_row": "MHEntropy", "metric": metric, "our_model": "mhentropy",
                     "ours": float(hand_metrics.loc["mhentropy", metric]), "paper": float(value)})
    for table in ("body_accuracy", "body_diversity"):
        for (method, supervision), values in paper[table].iterrows():
            model = BODY_COUNTERPARTS.get((method, supervision))
            for metric, value in values.items():
                ours = float(body_metrics.loc[model, metric]) if model in body_metrics.index else math.nan
                rows.append({"setting": "bodies", "paper_row": f"{method} ({supervision})", "metric": metric,
                             "our_model": model or "—", "ours": ours, "paper": float(value)})
    return pd.DataFrame(rows)
