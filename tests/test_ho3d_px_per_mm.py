"""HO3D items' ``px_per_mm``: the crop pixels a millimetre at the hand spans, checked against the projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mhe.data import ho3d
from mhe.data.fake_ho3d import write_fake_ho3d
from mhe.data.ho3d import HO3D

FLIP = np.array([1.0, -1.0, -1.0])


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("ho3d_px")
    write_fake_ho3d(root, frames_per_sequence=2)
    return root


@pytest.mark.parametrize("crop_size", [256, 128])
def test_px_per_mm_is_the_crop_pixel_shift_of_a_millimetre_at_the_root(fake, crop_size):
    ds = HO3D(fake, split="all", crop_size=crop_size)
    for i in range(len(ds)):
        item = ds[i]
        assert item["px_per_mm"].dtype == torch.float32 and item["px_per_mm"].shape == ()
        meta = ho3d.read_meta(ds.path(i, "meta"))
        K = np.asarray(meta["camMat"], dtype=np.float64)
        xyz = np.asarray(meta["handJoints3D"], dtype=np.float64) * FLIP  # OpenCV camera frame
        x0, y0, side = item["crop_box"].double().numpy()

        def crop_px(points, K=K, x0=x0, y0=y0, side=side):
            uv, _ = ho3d.project(points, K)
            return (uv - np.array([x0, y0])) * (crop_size / side)

        base = crop_px(xyz)
        # The planted pixels, as the item has them: the same crop.
        np.testing.assert_allclose(base, item["keypoints_2d_px"].double().numpy(), atol=1e-3)
        moved = xyz.copy()
        moved[4, 0] += 0.001  # the root, 1 mm along x
        shift = crop_px(moved)[4] - base[4]
        assert shift[0] == pytest.approx(float(item["px_per_mm"]), rel=1e-6)
        assert abs(shift[1]) < 1e-9
        # Along y the focal length fy applies (equal to fx in HO3D's cameras and the fake one).
        moved = xyz.copy()
        moved[4, 1] += 0.001
        expected = float(item["px_per_mm"]) * K[1, 1] / K[0, 0]
        assert (crop_px(moved)[4] - base[4])[1] == pytest.approx(expected, rel=1e-6)


def test_px_per_mm_collates_with_the_other_keys(fake):
    ds = HO3D(fake, split="test")
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["px_per_mm"].shape == (2,) and (batch["px_per_mm"] > 0).all()
