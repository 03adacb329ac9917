"""mhe.viz.body.plot_mesh_grid: one 3D panel per mesh on a common scale, optionally zoomed."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from mhe.viz.body import plot_mesh_grid


def _tetra(offset: float) -> np.ndarray:
    return np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]], dtype=float) + offset


FACES = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])


@pytest.mark.parametrize("zoom", [1.0, 1.6])
def test_mesh_grid_has_one_titled_panel_per_mesh(zoom):
    meshes = [_tetra(0.0), _tetra(0.05), _tetra(0.1)]
    fig = plot_mesh_grid(meshes, FACES, titles=["a", "b", "c"], ncols=2, zoom=zoom)
    try:
        assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
        # a common scale: every panel spans the same range on each axis
        spans = {tuple(round(hi - lo, 9) for lo, hi in (ax.get_xlim(), ax.get_ylim(), ax.get_zlim()))
                 for ax in fig.axes}
        assert len(spans) == 1
    finally:
        plt.close(fig)


def test_mesh_grid_views_draw_each_mesh_once_per_view():
    meshes = [_tetra(0.0), _tetra(0.05), _tetra(0.1)]
    fig = plot_mesh_grid(meshes, FACES, titles=["a", "b", "c"], views=[(0, -90), (0, 0)],
                         view_labels=["camera", "side"])
    try:
        assert len(fig.axes) == 6  # two rows (views) of three columns (meshes)
        assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c", "", "", ""]  # titles on the first row only
        assert [round(ax.azim) for ax in fig.axes] == [-90, -90, -90, 0, 0, 0]
    finally:
        plt.close(fig)


def test_poses_2d_3d_draws_one_3d_panel_per_pose_and_refuses_mismatched_lists():
    from mhe.viz.body import plot_poses_2d_3d

    rng = np.random.default_rng(0)
    uvs = [rng.normal(size=(21, 2)) for _ in range(2)]
    joints = [rng.normal(size=(21, 3)) for _ in range(2)]
    fig = plot_poses_2d_3d(uvs, joints, ["first", "second"])
    try:
        assert len(fig.axes) == 3  # the overlaid 2D panel, then one 3D panel per pose
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="one entry per pose, got 2, 2 and 1"):
        plot_poses_2d_3d(uvs, joints, ["only one"])
