"""Reading and writing experiment configs: YAML files, ``key=value`` overrides, plain dicts, diffs.

:func:`load_config` reads a YAML file (or a packaged config by name) and applies command-line overrides
(``train.lr=1e-3``) with type checks against the schema in :mod:`mhe.config`, so a typo or a wrong type
is a clear :class:`~mhe.config.ConfigError` rather than a silently ignored setting; :func:`dump_config`
writes the YAML back; :func:`config_to_dict` / :func:`config_from_dict` convert to and from the plain
data stored in checkpoints; :func:`config_diff` names the keys two configs differ in.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mhe.config import PACKAGED_CONFIG_DIR, ConfigError, ExperimentConfig, upgrade_config_dict, validate_config

# ---------------------------------------------------------------------------------------------------
# conversion between dataclasses and plain data


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as nested plain dicts / lists / primitives (YAML- and weights_only-safe)."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"expected a config dataclass, got {type(cfg).__name__}")
    return _to_plain(cfg)


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value


def config_from_dict(data: dict[str, Any], cls: type = ExperimentConfig, where: str = "") -> Any:
    """Build config dataclass ``cls`` from nested plain data, checking every key and value type.

    Missing keys take their defaults; unknown keys and wrong types raise :class:`ConfigError`
    naming the dotted key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__} ({data!r})")
    if cls is ExperimentConfig:  # an earlier version's config: objective.extra, removed variants' options
        data = upgrade_config_dict(data)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(_join(where, k) for k in unknown)}; "
            f"valid keys{' in ' + where if where else ''}: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], _join(where, k)) for k, v in data.items()}
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


@dataclass(frozen=True)
class _Override:
    """A command-line value: its raw text (for str fields) and its YAML reading (for the rest)."""

    raw: str
    parsed: Any

    def __repr__(self) -> str:
        return repr(self.raw)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert the harmless cases (int → float, list → tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(value, _Override) and origin not in (Union, types.UnionType):
        if tp is str:
            return value.raw
        if tp is float and isinstance(value.parsed, str):
            # YAML reads "1e-3" as text; the command line means the number
            try:
                return float(value.raw)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value.raw!r}") from None
        value = value.parsed
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return config_from_dict(value, tp, where)
    if origin in (Union, types.UnionType):
        plain = value.parsed if isinstance(value, _Override) else value
        if plain is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        choices = ", ".join(repr(a) for a in args)
        raise ConfigError(f"{where}: {value!r} is not one of {choices}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list like [128, 128], got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping like {{key: value}}, got {value!r}")
        key_tp, val_tp = args if args else (Any, Any)
        return {
            _coerce(k, key_tp, f"{where}"): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()
        }
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported config type {_type_name(tp)}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------
# YAML files and command-line overrides


def resolve_config_path(path: str | os.PathLike) -> Path:
    """``path`` itself if it exists, else a packaged config of that name (``hand_mhentropy``)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config {str(path)!r} is a folder; give a YAML file "
                          "(a run's is <train.out_dir>/config.yaml)")
    if p.exists():
        return p
    for candidate in (PACKAGED_CONFIG_DIR / p.name, PACKAGED_CONFIG_DIR / f"{p.name}.yaml"):
        if candidate.exists():
            return candidate
    shipped = ", ".join(sorted(q.stem for q in PACKAGED_CONFIG_DIR.glob("*.yaml"))) or "none"
    raise FileNotFoundError(f"config file {str(path)!r} not found; packaged configs: {shipped}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"train.lr=1e-3"`` into ``(["train", "lr"], 0.001)``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. train.lr=1e-3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key; write e.g. train.lr=1e-3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: cannot read value {raw!r} ({e})") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in nested plain ``data`` (a copy is returned); unknown sections are an error."""
    import copy

    if isinstance(overrides, (str, bytes)):
        raise TypeError(f"overrides must be a list of 'key=value' strings, e.g. [{overrides!r}], not a single string")

    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        value = _Override(text.split("=", 1)[1].strip(), value)
        node = data
        for i, k in enumerate(keys[:-1]):
            if k not in node or not isinstance(node[k], dict):
                # let config_from_dict name valid keys when the section itself is unknown
                if k not in node:
                    node[k] = {}
                else:
                    raise ConfigError(
                        f"override {text!r}: {'.'.join(keys[: i + 1])} is a value, not a section"
                    )
            node = node[k]
        node[keys[-1]] = value
    return data


def load_config(
    path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """Read an :class:`ExperimentConfig` from YAML (``None``: all defaults) and apply ``key=value`` overrides.

    ``path`` may also name a packaged config (``"hand_mhentropy"``). Raises :class:`ConfigError` on
    unknown keys, wrong types or values outside a field's choices.
    """
    if isinstance(overrides, (str, bytes)):
        raise TypeError(f"overrides must be a list of 'key=value' strings, e.g. [{overrides!r}], not a single string")
    data: dict[str, Any] = {}
    if path is not None:
        resolved = resolve_config_path(path)
        try:
            loaded = yaml.safe_load(resolved.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{resolved}: not valid YAML ({e})") from None
        if loaded is None:
            raise ConfigError(
                f"{resolved} is empty; write at least one section (e.g. `objective: {{name: mhentropy}}`), "
                "or start from a packaged config: mhe train --config hand_mhentropy"
            )
        if not isinstance(loaded, dict):
            raise ConfigError(f"{resolved}: the top level must be a mapping of sections, got {loaded!r}")
        data = loaded
    # start from the defaults so a partial file or override keeps every other default
    full = _merge(config_to_dict(ExperimentConfig()), data)
    full = apply_overrides(full, list(overrides))
    cfg = config_from_dict(full)
    validate_config(cfg)
    return cfg


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


class _Dumper(yaml.SafeDumper):
    """Block-style sections, flow-style lists (``flow_hidden: [128, 128]``)."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def dump_config(cfg: ExperimentConfig, path: str | os.PathLike | None = None) -> str:
    """The config as YAML text; also written to ``path`` when given."""
    text = yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return text


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts, as ``"key: a -> b"`` lines."""
    out: list[str] = []
    for k in sorted(set(a) | set(b)):
        key = _join(prefix, str(k))
        if k not in a:
            out.append(f"{key}: (missing) -> {b[k]!r}")
        elif k not in b:
            out.append(f"{key}: {a[k]!r} -> (missing)")
        elif isinstance(a[k], dict) and isinstance(b[k], dict):
            out.extend(config_diff(a[k], b[k], key))
        elif _norm(a[k]) != _norm(b[k]):
            out.append(f"{key}: {a[k]!r} -> {b[k]!r}")
    return out


def _norm(v: Any) -> Any:
    return [_norm(x) for x in v] if isinstance(v, (list, tuple)) else v
