"""mhe.body.files and the stand-in cache: chumpy-era pickles without chumpy, .npz, checksums, errors."""

from __future__ import annotations

import pickle
import sys
import threading
import types

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mhe.body import BodyModelFileError, build_standin_mano, load_mano, read_model_file
from mhe.body.files import file_md5, identify_model_file
from mhe.body.standin import STANDIN_VERSION, ensure_standin


def _fake_chumpy(monkeypatch):
    """Register minimal look-alikes of chumpy's classes under chumpy's module names, as the model
    files reference them (``chumpy.ch.Ch``, ``chumpy.reordering.Select``, ``chumpy.ch_ops.add``)."""

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = set()

    class Select:
        def __init__(self, a, idxs, preferred_shape):
            self.a, self.idxs, self.preferred_shape = a, np.asarray(idxs), preferred_shape

    class add:
        def __init__(self, a, b):
            self.a, self.b = a, b

    mods = {}
    for modname, cls in (("chumpy.ch", Ch), ("chumpy.reordering", Select), ("chumpy.ch_ops", add)):
        mod = types.ModuleType(modname)
        cls.__module__, cls.__qualname__ = modname, cls.__name__
        setattr(mod, cls.__name__, cls)
        mods[modname] = mod
        monkeypatch.setitem(sys.modules, modname, mod)
    monkeypatch.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
    return Ch, Select, add


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_chumpy_pickle_loads_without_chumpy(tmp_path, monkeypatch, protocol):
    with monkeypatch.context() as mp:
        Ch, Select, add = _fake_chumpy(mp)
        base = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
        data = {
            "shapedirs": Ch(base),
            "J": Select(Ch(base), idxs=np.array([5, 1, 7, 0]), preferred_shape=(2, 2)),
            "sum": add(Ch(np.ones(3)), Ch(np.array([1.0, 2.0, 3.0]))),
            "J_regressor": sp.csc_matrix(np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])),
            "f": np.array([[0, 1, 2]], dtype=np.uint32),
            "bs_style": "lbs",
        }
        path = tmp_path / "model.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
    # chumpy (and our look-alikes) are gone again: the reader must not need them.
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules
    out = read_model_file(path)
    assert "chumpy" not in sys.modules
    np.testing.assert_array_equal(out["shapedirs"], base)
    np.testing.assert_array_equal(out["J"], np.array([[5.0, 1.0], [7.0, 0.0]]))
    np.testing.assert_array_equal(out["sum"], [2.0, 3.0, 4.0])
    np.testing.assert_array_equal(out["J_regressor"], [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    assert out["f"].dtype == np.uint32 and str(out["bs_style"]) == "lbs"


def test_chumpy_era_mano_file_loads_through_the_whole_path(tmp_path, monkeypatch):
    data = build_standin_mano("right")
    del data["mhe_standin"]
    with monkeypatch.context() as mp:
        Ch, _, _ = _fake_chumpy(mp)
        chumpy_data = {**data, "shapedirs": Ch(data["shapedirs"]), "hands_mean": Ch(data["hands_mean"])}
        path = tmp_path / "mano" / "MANO_RIGHT.pkl"
        path.parent.mkdir()
        path.write_bytes(pickle.dumps(chumpy_data, protocol=2))
    real = load_mano(model_dir=tmp_path, dtype=torch.float64)
    ref = load_mano(standin=True, dtype=torch.float64)
    assert not real.is_standin
    go, x = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 45, dtype=torch.float64)
    betas = torch.randn(2, 10, dtype=torch.float64)
    torch.testing.assert_close(real(go, x, betas).vertices, ref(go, x, betas).vertices)


def test_unknown_chumpy_class_is_reported(tmp_path, monkeypatch):
    with monkeypatch.context() as mp:
        _fake_chumpy(mp)
        weird = types.ModuleType("chumpy.linalg")

        class Inv:
            def __init__(self, a):
                self.a = a

        Inv.__module__, Inv.__qualname__ = "chumpy.linalg", "Inv"
        weird.Inv = Inv
        mp.setitem(sys.modules, "chumpy.linalg", weird)
        path = tmp_path / "m.pkl"
        path.write_bytes(pickle.dumps({"x": Inv(np.eye(2))}, protocol=2))
    with pytest.raises(BodyModelFileError, match="chumpy 'Inv'"):
        read_model_file(path)


def test_npz_round_trip_and_loading(tmp_path):
    data = build_standin_mano("right")
    data["J_regressor"] = data["J_regressor"].toarray()
    folder = tmp_path / "mano"
    folder.mkdir()
    np.savez(folder / "MANO_RIGHT.npz", **data)
    out = read_model_file(folder / "MANO_RIGHT.npz")
    for key in ("v_template", "weights", "J_regressor", "hands_components"):
        np.testing.assert_array_equal(out[key], data[key])
    m = load_mano(model_dir=tmp_path)  # finds mano/MANO_RIGHT.npz
    assert m.source.path.suffix == ".npz"


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no body-model file"):
        read_model_file(tmp_path / "absent.pkl")
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x02this is not a pickle")
    with pytest.raises(BodyModelFileError, match="could not be unpickled"):
        read_model_file(junk)
    listy = tmp_path / "list.pkl"
    listy.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(BodyModelFileError, match="holds a list"):
        read_model_file(listy)
    badnpz = tmp_path / "bad.npz"
    badnpz.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(BodyModelFileError, match="npz"):
        read_model_file(badnpz)


def test_md5_matches_the_rfc_1321_test_vector(tmp_path):
    path = tmp_path / "abc.bin"
    path.write_bytes(b"abc")
    assert file_md5(path) == "900150983cd24fb0d6963f7d28e17f72"
    info = identify_model_file(path, data={})
    assert info.genuine is None and not info.is_standin and "unrecognised" in info.describe()


def test_standin_cache_is_generated_once_and_refreshed_when_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("MHE_DATA", str(tmp_path))
    path = ensure_standin("mano", "right")
    assert path == tmp_path / "body_models" / "standin" / "mano" / "MANO_RIGHT.pkl"
    stamp = path.stat().st_mtime_ns
    assert ensure_standin("mano", "right").stat().st_mtime_ns == stamp  # cached, not rewritten
    data = read_model_file(path)
    assert str(data["mhe_standin"]) == f"mano-right v{STANDIN_VERSION}"
    # A stale or broken cache is regenerated.
    path.write_bytes(pickle.dumps({**data, "mhe_standin": "mano-right v0"}))
    assert str(read_model_file(ensure_standin("mano", "right"))["mhe_standin"]).endswith(f"v{STANDIN_VERSION}")
    path.write_bytes(b"garbage")
    assert read_model_file(ensure_standin("mano", "right"))["v_template"].shape == (778, 3)
    with pytest.raises(ValueError, match="kind"):
        ensure_standin("flame", "right")


def test_read_only_data_folder_falls_back_to_temp(tmp_path, monkeypatch):
    from mhe.body import standin

    monkeypatch.setenv("MHE_DATA", str(tmp_path / "readonly"))
    monkeypatch.setattr(standin.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    real_write = standin.atomic_write_bytes

    def refuse(path, data):
        if "readonly" in str(path):
            raise PermissionError(f"read-only: {path}")
        return real_write(path, data)

    monkeypatch.setattr(standin, "atomic_write_bytes", refuse)
    path = ensure_standin("mano", "right")
    assert path == tmp_path / "tmp" / "mhe_standin" / "mano" / "MANO_RIGHT.pkl"
    assert ensure_standin("mano", "right") == path  # found in the fallback cache next time
    assert read_model_file(path)["v_template"].shape == (778, 3)


def test_concurrent_generation_leaves_a_whole_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MHE_DATA", str(tmp_path))
    errors = []

    def work():
        try:
            ensure_standin("mano", "left")
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    folder = tmp_path / "body_models" / "standin" / "mano"
    assert [p.name for p in folder.iterdir()] == ["MANO_LEFT.pkl"]  # no temporary files left behind
    assert read_model_file(folder / "MANO_LEFT.pkl")["f"].shape == (1538, 3)
