"""Config dataclasses, YAML round trips and type-checked command-line overrides."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from mhe.config import (
    PACKAGED_CONFIG_DIR,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    ObjectiveConfig,
    TrainConfig,
)
from mhe.lab.config_io import (
    config_diff,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override,
)


def test_defaults_are_cpu_friendly_and_documented_official_values():
    cfg = load_config()
    assert cfg == ExperimentConfig()
    assert cfg.train.batch_size == 64 and cfg.train.lr == 2e-4 and cfg.train.grad_clip == 1.0
    assert cfg.train.num_samples == 10 and cfg.model.num_pca_comps == 45 and cfg.objective.b == 0.03
    assert cfg.model.encoder == "mlp" and cfg.data.dataset == "synthetic-hands"


def test_every_field_has_a_comment():
    # the comment lines directly above each field in the source are the field's documentation
    import inspect

    for cls in (ExperimentConfig, ModelConfig, DataConfig, ObjectiveConfig, TrainConfig):
        lines = inspect.getsource(cls).splitlines()
        for f in dataclasses.fields(cls):
            i = next(n for n, line in enumerate(lines) if line.strip().startswith(f"{f.name}:"))
            assert lines[i - 1].strip().startswith("#"), f"{cls.__name__}.{f.name} has no comment"


def test_yaml_round_trip(tmp_path):
    cfg = load_config(overrides=["model.flow_hidden=[64, 32]", "objective.w_nll=0.001", "name=run7"])
    path = tmp_path / "c.yaml"
    dump_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert again.model.flow_hidden == (64, 32)  # lists come back as tuples
    # the file is plain YAML a user can read: sections, and the list written inline
    text = path.read_text()
    assert yaml.safe_load(text)["model"]["flow_hidden"] == [64, 32]
    assert "flow_hidden: [64, 32]" in text


def test_partial_file_keeps_other_defaults(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  lr: 1.0e-3\nmodel:\n  encoder: resmlp\n")
    cfg = load_config(path)
    assert cfg.train.lr == 1e-3 and cfg.model.encoder == "resmlp"
    assert cfg.train.batch_size == 64 and cfg.model.context_dim == ModelConfig().context_dim


@pytest.mark.parametrize(
    "override, getter, expected",
    [
        ("train.lr=1e-3", lambda c: c.train.lr, 1e-3),  # YAML alone would read "1e-3" as text
        ("train.lr=3", lambda c: c.train.lr, 3.0),  # an int for a float field becomes a float
        ("train.steps=null", lambda c: c.train.steps, None),
        ("train.steps=12", lambda c: c.train.steps, 12),
        ("train.grad_clip=null", lambda c: c.train.grad_clip, None),
        ("train.progress=false", lambda c: c.train.progress, False),
        ("name=123", lambda c: c.name, "123"),  # a str field keeps the text as typed
        ("data.root=/data/ho3d", lambda c: c.data.root, "/data/ho3d"),
        ("model.resnet_depth=50", lambda c: c.model.resnet_depth, 50),
        ("model.encoder_hidden=[8]", lambda c: c.model.encoder_hidden, (8,)),
        ("objective.w_ent=0", lambda c: c.objective.w_ent, 0.0),
        ("device=cuda:1", lambda c: c.device, "cuda:1"),
    ],
)
def test_overrides_are_typed(override, getter, expected):
    value = getter(load_config(overrides=[override]))
    assert value == expected and type(value) is type(expected)


def test_later_override_wins_and_file_is_overridden(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  epochs: 3\n")
    cfg = load_config(path, ["train.epochs=5", "train.epochs=7"])
    assert cfg.train.epochs == 7


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "unknown key(s) train.lrr; valid keys in train: epochs"),
        ("foo.bar=1", "unknown key(s) foo; valid keys: name"),
        ("train.lr=abc", "train.lr: expected a number"),
        ("train.epochs=1.5", "train.epochs: expected an integer"),
        ("train.progress=1", "train.progress: expected true or false"),
        ("model.encoder=vit", "model.encoder: 'vit' is not one of 'mlp', 'resmlp', 'cnn', 'resnet'"),
        ("model.resnet_depth=101", "model.resnet_depth: 101 is not one of 18, 34, 50"),
        ("model.flow_hidden=64", "model.flow_hidden: expected a list"),
        ("train=3", "train: expected a mapping"),
        ("train.lr.x=1", "train.lr is a value, not a section"),
        ("lr", "must look like key=value"),
        ("=3", "empty key"),
        ("train..lr=3", "empty key"),
        ("train.lr=[1,", "cannot read value"),
        ("train.lr=-1", "train.lr = -1.0 is invalid: it must be positive"),
        ("train.batch_size=0", "train.batch_size = 0 is invalid"),
        ("data.occlusion=1.5", "data.occlusion = 1.5 is invalid"),
        ("model.flip_temperature=0", "model.flip_temperature = 0.0 is invalid: it must be positive"),
        ("objective.w_nll=abc", "objective.w_nll: 'abc' is not a valid"),
        ("objective.extra.w_nll=abc", "objective.w_nll: 'abc' is not a valid"),
        ("objective.extra=3", "objective.extra: expected a mapping of weights"),
    ],
)
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert message in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found; packaged configs"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)
    bad.write_text("train:\n  batch_size: '64'\n")
    with pytest.raises(ConfigError, match="train.batch_size: expected an integer"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty.yaml is empty"):  # not silently all defaults
        load_config(empty)
    empty.write_text("# only a comment\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(empty)
    assert load_config() == ExperimentConfig()  # no file at all: the documented defaults


def test_packaged_configs_load_by_name():
    shipped = sorted(PACKAGED_CONFIG_DIR.glob("*.yaml"))
    assert shipped, "at least the example config ships with the package"
    for path in shipped:
        by_name = load_config(path.stem)
        assert by_name == load_config(path)


def test_objective_kwargs_leave_out_unset_weights():
    obj = ObjectiveConfig(name="prohmr", w_ent=0.0, w_ortho=0.5)
    assert obj.kwargs() == {"w_ent": 0.0, "b": 0.03, "w_ortho": 0.5}
    assert ObjectiveConfig(b=None).kwargs() == {}
    # every weight is a documented field; no untyped bag of keyword arguments is left
    assert all(f.name in ("name", "b", "alpha") or f.name.startswith("w_") for f in dataclasses.fields(ObjectiveConfig))


def test_to_dict_is_plain_data():
    d = config_to_dict(ExperimentConfig())

    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (bool, int, float, str))

    assert plain(d)
    assert config_from_dict(d) == ExperimentConfig()
    with pytest.raises(TypeError, match="expected a config dataclass"):
        config_to_dict({"a": 1})


def test_config_diff_names_changed_keys():
    a = config_to_dict(ExperimentConfig())
    b = config_to_dict(load_config(overrides=["train.lr=1e-3", "model.flow_hidden=[8, 8]"]))
    assert config_diff(a, b) == ["model.flow_hidden: [128, 128] -> [8, 8]", "train.lr: 0.0002 -> 0.001"]
    del b["data"]["root"]
    assert "data.root: None -> (missing)" in config_diff(a, b)
    assert config_diff(a, a) == []


def test_parse_override_reads_yaml_values():
    assert parse_override("train.steps=5") == (["train", "steps"], 5)
    assert parse_override("model.flow_hidden=[1, 2]") == (["model", "flow_hidden"], [1, 2])
    assert parse_override("name=a=b") == (["name"], "a=b")


def test_out_path_fills_in_the_name():
    cfg = load_config(overrides=["name=abc", "train.out_dir=runs/{name}/x"])
    assert str(cfg.out_path()) == "runs/abc/x"


def _earlier(model=None, objective=None):
    """A plain config as earlier versions of mhe stored it in checkpoints (every field written out)."""
    data = config_to_dict(ExperimentConfig())
    data["model"].update({"flip_branches": "shared", **(model or {})})
    data["objective"].update({"extra": {}, **(objective or {})})
    return data


def test_configs_of_earlier_versions_load_into_typed_fields():
    # objective weights under objective.extra move to their fields
    cfg = config_from_dict(_earlier(objective={"name": "prohmr", "extra": {"w_nll": 1e-3, "w_betas": 5e-4}}))
    assert cfg.objective.w_nll == 1e-3 and cfg.objective.w_betas == 5e-4
    assert cfg.objective.kwargs() == {"b": 0.03, "w_nll": 1e-3, "w_betas": 5e-4}
    assert "extra" not in config_to_dict(cfg)["objective"] and "flip_branches" not in config_to_dict(cfg)["model"]
    # a removed option at the value that meant "not used" is accepted and dropped
    mixture = {"rotation_in_flow": True, "flip_mixture": True, "flip_branches": "conditional"}
    assert config_from_dict(_earlier(model=mixture, objective={"extra": {"w_branch": 0.0}})).model.flip_mixture
    assert not config_from_dict(_earlier(model={"flip_branches": "conditional"})).model.flip_mixture
    # the command line's old spelling still reaches the field
    assert load_config("hand_nll", ["objective.extra.w_keypoints=2"]).objective.w_keypoints == 2.0


@pytest.mark.parametrize("model, objective, overrides, message", [
    ({"flip_branches": "tilt"}, None, ["model.flip_branches=tilt"], "model.flip_branches='tilt'"),
    ({"rotation_in_flow": True, "flip_mixture": True, "flip_branches": "shared"}, None,
     ["model.rotation_in_flow=true", "model.flip_mixture=true", "model.flip_branches=shared"],
     "model.flip_branches='shared'"),
    (None, {"extra": {"w_branch": 0.2}}, ["objective.extra.w_branch=0.2"], "objective.extra.w_branch=0.2"),
])
def test_options_of_removed_variants_are_refused_with_where_they_are_described(model, objective, overrides, message):
    pattern = (rf"{re.escape(message)}: this option .* was a research variant that was not adopted, and it was "
               r"removed from mhe; docs/variants.md describes it")
    with pytest.raises(ConfigError, match=pattern):  # in a stored config
        config_from_dict(_earlier(model, objective))
    with pytest.raises(ConfigError, match=pattern):  # and on the command line
        load_config(overrides=overrides)


def test_a_weight_given_twice_is_refused():
    with pytest.raises(ConfigError, match=r"objective.w_nll is given twice, as 1.0 and as objective.extra.w_nll=2.0"):
        config_from_dict(_earlier(objective={"w_nll": 1.0, "extra": {"w_nll": 2.0}}))



def test_a_run_of_an_earlier_version_resumes():
    from mhe.lab.checkpoint import check_resume_config

    saved = _earlier(objective={"name": "nll", "extra": {"w_nll": 1.0, "w_keypoints": 1.0}})
    check_resume_config(saved, config_to_dict(config_from_dict(saved)))  # the same run, in today's schema
    with pytest.raises(ConfigError, match="docs/variants.md"):
        check_resume_config(_earlier(model={"flip_branches": "tilt"}), config_to_dict(ExperimentConfig()))
