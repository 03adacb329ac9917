"""The ``mhe`` command: train, evaluate, reproduce the figures, describe the installation.

``mhe train --config <yaml> [key=value ...]`` trains the experiment :mod:`mhe.lab.builders` builds for
``data.dataset``, on one process or under ``torchrun`` on many; ``mhe evaluate --checkpoint <path>
--split test`` rebuilds a checkpoint's experiment and prints (and optionally writes as JSON) the metrics
of one split with the official evaluation settings (:mod:`mhe.evaluation`); ``mhe reproduce`` runs the
notebook sequence; ``mhe info`` prints versions, devices, body-model files and the experiments.
``--plugin MODULE`` imports a module first, so user code can add experiments and objectives.

Every user error (a bad argument, file, dataset or config; a checkpoint that does not fit) is printed as
one line, ``mhe <command>: error: ...``, with exit status 2 and no traceback; ``--debug`` shows the
traceback. Arguments are checked before any work starts: options are never abbreviated (``--data`` is not
``--data-seed``), and an output (``--json``, ``--out``) never replaces an existing file without
``--overwrite``, nor anything that is not a regular file (``--json -`` writes to standard output). A
setting that would change nothing (a data key the dataset does not read, ``--root`` for generated data,
``model.flip_temperature`` without the flip mixture) is refused. Ctrl-C or SIGTERM during training writes a
checkpoint, prints how to resume and exits with 130 / 143. Heavy libraries (torch) load only after the
arguments are read, so ``mhe --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import sys
from pathlib import Path

from mhe.errors import UserError

# errors a user can fix from the message alone: printed as one line, without a traceback
USER_ERRORS = (UserError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, ImportError)

# the official evaluation settings (kept equal to mhe.evaluation's, which a test checks; not imported
# from there so that `mhe --help` does not load torch)
EVAL_SAMPLES, EVAL_TEMPERATURE, EVAL_BATCH_SIZE = 200, 0.8, 50


def validation_sweep_parser(description: str, models, temperatures, out: str | Path,
                            append_help: str) -> argparse.ArgumentParser:
    """The arguments the validation-sweep tools share (``tools/flip_calibration.py``,
    ``tools/selection_validation.py``): the models, a temperature grid, how many validation items and
    hypotheses, the CSV and whether to add to it."""
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    parser.add_argument("models", nargs="*", default=list(models),
                        help="shipped names or run folders / checkpoints (default: %(default)s)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=list(temperatures))
    parser.add_argument("--items", type=int, default=None, help="the first validation items (default: all)")
    parser.add_argument("--samples", type=int, default=200, help="hypotheses per hand (default: 200)")
    parser.add_argument("--out", default=str(out))
    parser.add_argument("--append", action="store_true", help=append_help)
    return parser


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum`` ("positive", "non-negative" in the message)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {what} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a {what} integer, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_nonnegative_int = _int_at_least(0, "non-negative")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mhe`` command (sub-commands train, evaluate, reproduce, info)."""
    parser = argparse.ArgumentParser(
        prog="mhe", description="Multi-hypothesis 3D hand and body pose with MHEntropy.", allow_abbrev=False
    )
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (it may register experiments / objectives); repeatable")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    # allow_abbrev=False everywhere: no prefix matching, so `--data` is never taken for `--data-seed`
    tr = sub.add_parser("train", help="train an experiment from a YAML config", allow_abbrev=False,
                        description="Train the experiment a config describes. Launch with "
                        "`torchrun --nproc_per_node N -m mhe.lab.cli train ...` for several GPUs/processes. "
                        "Ctrl-C saves a checkpoint; continue with --resume.")
    tr.add_argument("--config", required=True,
                    help="YAML file, or the name of a packaged config (e.g. hand_mhentropy)")
    tr.add_argument("overrides", nargs="*", metavar="key=value",
                    help="config overrides, e.g. train.lr=1e-3 objective.w_ent=0 (anywhere on the line)")
    tr.add_argument("--resume", action="store_true", help="continue from <train.out_dir>/last.pt")
    tr.add_argument("--overwrite", action="store_true", help="start again even if train.out_dir holds a run")
    tr.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint on one split", allow_abbrev=False,
                        description="Rebuild a checkpoint's experiment and report the metrics of one split, "
                        f"with the official evaluation settings (S = {EVAL_SAMPLES} for hands, 25 for bodies, "
                        "temperature "
                        f"{EVAL_TEMPERATURE}, batches of {EVAL_BATCH_SIZE}, seed 0) unless changed.")
    ev.add_argument("--checkpoint", required=True, help="a checkpoint written by `mhe train` (last.pt), or a "
                    "shipped one's name (hand_mhentropy, hand_nll, ...)")
    ev.add_argument("--split", choices=("val", "test"), default="test",
                    help="which split to score (default: test, as the README's tables)")
    ev.add_argument("--data", help="dataset to evaluate on (default: the one it was trained on), "
                    "e.g. synthetic-hands, ho3d, synthetic-bodies")
    ev.add_argument("--root", help="dataset folder (needed for real data such as HO3D v3)")
    ev.add_argument("--samples", type=_positive_int, default=None,
                    help=f"hypotheses per item (default: the protocol's, {EVAL_SAMPLES} for hands, 25 for bodies)")
    ev.add_argument("--temperature", type=_positive_float, default=EVAL_TEMPERATURE,
                    help=f"sampling temperature (official: {EVAL_TEMPERATURE})")
    ev.add_argument("--batch-size", type=_positive_int, default=EVAL_BATCH_SIZE,
                    help=f"items per batch (default {EVAL_BATCH_SIZE}; the sampling noise depends on it)")
    ev.add_argument("--max-items", type=_positive_int, help="evaluate only the first N items")
    ev.add_argument("--chunk", type=_positive_int, default=None,
                    help="hypotheses per item scored at once (default 256): memory, not results; "
                    "e.g. --samples 4096 --chunk 128 on a small machine")
    ev.add_argument("overrides", nargs="*", metavar="data.key=value",
                    help="another setting of the generated benchmark, e.g. data.rotation=ho3d "
                    "data.visibility=official; "
                    "also model.flip_temperature=T (the depth-flip weight's temperature, 1: as trained)")
    ev.add_argument("--data-seed", type=_nonnegative_int, help="draw the generated benchmark's split from this "
                    "seed (a fresh test split; default: the seed the model was trained with)")
    ev.add_argument("--device", help="cpu, cuda, ... (default: CUDA when present)")
    ev.add_argument("--json", metavar="OUT", help="also write the result as JSON to OUT (- for standard output: "
                    "the table then goes to standard error)")
    ev.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")

    me = sub.add_parser("meshes", help="write one item's hypotheses as meshes (.ply/.obj/.glb) for MeshLab or Blender",
                        allow_abbrev=False,
                        description="Rebuild a checkpoint's experiment and write the meshes of S hypotheses of one "
                        "item (one colour each) and of its ground truth (dark grey): mm, root-relative.")
    me.add_argument("--checkpoint", required=True,
                    help="a checkpoint path or a shipped one's name (body_mhentropy, ...)")
    me.add_argument("--out", required=True, help="the mesh file to write: .ply, .obj or .glb")
    me.add_argument("--item", type=_nonnegative_int, default=0, help="index of the item in the split (default 0)")
    me.add_argument("--split", choices=("val", "test"), default="test")
    me.add_argument("--samples", type=_positive_int, default=10, help="hypotheses to write (default 10)")
    me.add_argument("--temperature", type=_positive_float, default=EVAL_TEMPERATURE)
    me.add_argument("--data", help="dataset to take the item from (default: the one it was trained on)")
    me.add_argument("--root", help="dataset folder (needed for data read from files: ho3d, prohmr, 3dpw)")
    me.add_argument("--data-seed", type=_nonnegative_int, help="a fresh split of a generated benchmark")
    me.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    me.add_argument("--device", help="cpu, cuda, ... (default: CUDA when present)")
    rep = sub.add_parser("reproduce", help="run every notebook with SMOKE=False and write figures/",
                         allow_abbrev=False)
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--only", nargs="*", help="substrings of notebook names to run")

    sub.add_parser("info", help="versions, devices, body-model files, experiments", allow_abbrev=False)
    return parser


REAL_DATASETS = ("ho3d", "prohmr", "3dpw")  # datasets read from a folder: --root is required


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments (before any work starts); errors exit with status 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse keeps its sub-command parsers privately: the one group of sub-commands, by name
    sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr,index]
    if extra:
        # `mhe train --device cpu train.lr=1e-3`: overrides after an option land here
        if args.command in ("train", "evaluate") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            sub.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command in ("evaluate", "meshes") and args.data in REAL_DATASETS and not args.root:
        sub.error(f"--data {args.data} needs --root <folder of the dataset> ({ROOT_HINTS[args.data]})")
    return args


# what --root must hold, per dataset read from files (see docs/formats.md)
ROOT_HINTS = {
    "ho3d": "for HO3D v3: the folder holding train.txt",
    "prohmr": "the folder holding train.npz, val.npz and/or test.npz",
    "3dpw": "the folder holding sequenceFiles/{train,validation,test}/*.pkl",
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mhe`` console script; returns the exit status."""
    args = parse_args(argv)
    try:
        for module in args.plugin:
            if module.endswith(".py") or "/" in module or "\\" in module:
                stem = Path(module).stem
                raise ImportError(f"--plugin {module}: give a module name (--plugin {stem}), not a file; put its "
                                  f"folder on PYTHONPATH (e.g. PYTHONPATH={Path(module).parent} mhe ...)")
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
                raise FileNotFoundError(
                    f"--plugin {module}: no such module; put it on PYTHONPATH (e.g. PYTHONPATH=. mhe ...)"
                ) from None
        if args.command == "train":
            return _train(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "meshes":
            return _meshes(args)
        if args.command == "reproduce":
            from mhe.lab.notebooks import reproduce

            reproduce(args.seed, args.only)
            return 0
        print(info_text())
        return 0
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"mhe {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        from mhe.lab.train import TrainingInterrupted

        if args.debug:
            raise
        if isinstance(e, TrainingInterrupted):
            print(f"mhe {args.command}: stopped: {e}", file=sys.stderr)
            return 128 + int(e.signum)
        print(f"mhe {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if isinstance(e, ImportError) and not text:
        text = f"cannot import {e.name}"
    return text or type(e).__name__


def _train(args: argparse.Namespace) -> int:
    from mhe.lab.config_io import dump_config, load_config

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    if args.no_progress:
        overrides.append("train.progress=false")
    cfg = load_config(args.config, overrides)
    _check_device(cfg.device)
    from mhe.lab.builders import check_settings_apply

    check_settings_apply(cfg, args.overrides)  # a data.* key the dataset does not read is refused
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    if args.resume and args.overwrite:
        from mhe.config import ConfigError

        raise ConfigError("--resume continues a run and --overwrite starts it again: choose one")

    from mhe.lab.distributed import cleanup_distributed, init_distributed
    from mhe.lab.experiments import train_experiment

    info = init_distributed(cfg.device)
    try:
        result = train_experiment(cfg, resume=args.resume, overwrite=args.overwrite, dist=info)
    finally:
        if info.distributed:
            cleanup_distributed()
    if info.is_main:
        print(f"[mhe] {cfg.name}: {result.step} steps ({result.epoch} epochs) in {result.seconds:.1f} s "
              f"on {info.world_size} process(es), {info.device}")
        print(f"[mhe] checkpoint: {result.checkpoint}")
        if result.val_metrics:
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in result.val_metrics.items() if k not in ("step", "epoch"))
            print(f"[mhe] validation: {shown}")
    return 0


def _fmt(value: float | None, spec: str = ".4g") -> str:
    """A metric for printing: ``n/a`` when undefined (None or NaN)."""
    if value is None or value != value:
        return "n/a"
    return format(value, spec)


def _check_device(preference: str | None) -> None:
    if not preference:
        return
    from mhe.config import ConfigError
    from mhe.utils import default_device

    try:
        default_device(preference)
    except RuntimeError as e:  # CUDA asked for on a machine without it, or a malformed device string
        raise ConfigError(str(e)) from None


def _meshes(args: argparse.Namespace) -> int:
    from mhe.errors import check_output_path
    from mhe.viz.meshes import MESH_FORMATS

    # before any work: the file would not be written after the sampling
    check_output_path(args.out, overwrite=args.overwrite, option="--out", suffixes=MESH_FORMATS)
    _check_device(args.device)
    from mhe.lab.experiments import export_checkpoint_meshes

    path = export_checkpoint_meshes(args.checkpoint, args.out, index=args.item, split=args.split,
                                    num_samples=args.samples, temperature=args.temperature,
                                    dataset=args.data, root=args.root, data_seed=args.data_seed,
                                    device=args.device, overwrite=args.overwrite)
    print(f"written {path}: {args.samples} hypotheses of {args.split} item {args.item} (one colour each) and, "
          f"where the item has pose labels, its ground truth (dark grey); mm, root-relative")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mhe.errors import check_output_path

    to_stdout = args.json == "-"
    if args.json is not None and not to_stdout:  # before any work: never clobber, never lose the result
        check_output_path(args.json, overwrite=args.overwrite, option="--json")
    _check_device(args.device)
    from mhe.lab.experiments import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint,
        split=args.split,
        dataset=args.data,
        root=args.root,
        num_samples=args.samples,
        temperature=args.temperature,
        batch_size=args.batch_size,
        max_items=args.max_items,
        device=args.device,
        data_seed=args.data_seed,
        data_overrides=args.overrides,
        sample_chunk=args.chunk,
    )
    table = sys.stderr if to_stdout else sys.stdout  # `--json -`: standard output holds the JSON alone
    seed_note = f" (data seed {result['data_seed']})" if result["data_seed"] is not None else ""
    if result["data_overrides"]:
        seed_note += f" [{' '.join(result['data_overrides'])}]"
    where = f" at {result['root']}" if result.get("root") else ""
    skipped = result.get("skipped_items", 0)
    skip_note = f" ({skipped} more skipped: nothing usable in them)" if skipped else ""
    print(f"{result['checkpoint']} (step {result['step']}) on {result['dataset']}{where}, {result['split']} split"
          f"{seed_note}: {result['items']} items{skip_note}, S = {result['num_samples']}, temperature "
          f"{result['temperature']}, batches of {result['batch_size']}, seed {result['seed']}; "
          f"input: {result['input']}",
          file=table)
    width = max((len(k) for k in result["metrics"]), default=0)
    for k, v in result["metrics"].items():
        print(f"  {k:<{width}}  {_fmt(v, '.4f')}", file=table)
    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    if to_stdout:
        sys.stdout.write(text)
        sys.stdout.flush()
    elif args.json is not None:
        from mhe.utils import atomic_write_bytes

        path = atomic_write_bytes(args.json, text.encode())
        print(f"written {path}")
    return 0


# ---------------------------------------------------------------------------------------------------
# mhe info


def _version(module: str) -> str:
    from importlib import metadata

    try:
        version = metadata.version(module)
    except metadata.PackageNotFoundError:
        return "not installed"
    try:
        importlib.import_module(module)
    except Exception as e:  # installed but broken (e.g. a torchvision built for another torch)
        return f"{version}, does not import ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    return version


def body_model_status() -> list[str]:
    """One line per MANO / SMPL file the package would load: real (with its checksum verdict) or stand-in."""
    try:
        from mhe.body import identify_model_file
        from mhe.body.models import body_models_root
    except ImportError:
        return ["mhe.body not available"]
    root = body_models_root()
    lines = []
    for sub, stem in [("mano", "MANO_RIGHT"), ("mano", "MANO_LEFT"), ("smpl", "SMPL_NEUTRAL"),
                      ("smpl", "SMPL_MALE"), ("smpl", "SMPL_FEMALE")]:
        candidates = [root / sub / f"{stem}.{ext}" for ext in ("pkl", "npz")]
        candidates += [root / f"{stem}.{ext}" for ext in ("pkl", "npz")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            lines.append(f"{stem}: not found under {root} -> license-free stand-in")
            continue
        try:
            lines.append(f"{stem}: {identify_model_file(found).describe()}")
        except Exception as e:  # a corrupt file should not break `mhe info`
            lines.append(f"{stem}: {found} cannot be read ({type(e).__name__}: {e})")
    return lines


def info_text() -> str:
    """The report ``mhe info`` prints."""
    import torch

    from mhe import __version__
    from mhe.config import PACKAGED_CONFIG_DIR
    from mhe.lab.builders import available_experiments
    from mhe.utils import data_dir, default_device

    lines = [f"mhe {__version__} (Python {platform.python_version()}, {platform.platform()})", "packages:"]
    for name in ("torch", "numpy", "smplx", "zuko", "roma", "scipy", "pandas", "matplotlib", "plotly",
                 "torchvision"):
        lines.append(f"  {name:<11} {_version(name)}")
    lines.append("devices:")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            lines.append(f"  cuda:{i}  {torch.cuda.get_device_name(i)}")
    else:
        lines.append("  no CUDA device; training runs on the CPU")
    lines.append(f"  default: {default_device()}  (torch threads: {torch.get_num_threads()})")
    lines.append(f"data folder: {data_dir()}")
    lines.append("body models:")
    lines += [f"  {line}" for line in body_model_status()]
    try:
        experiments = ", ".join(available_experiments()) or "none registered"
    except Exception as e:  # a provider that fails to import is reported, not fatal here
        experiments = f"cannot list ({type(e).__name__}: {e})"
    lines.append(f"experiments (data.dataset): {experiments}")
    try:
        from mhe.objectives import OBJECTIVES

        lines.append(f"objectives: {', '.join(sorted(OBJECTIVES))}")
    except ImportError:
        lines.append("objectives: mhe.objectives not available")
    configs = ", ".join(sorted(p.stem for p in PACKAGED_CONFIG_DIR.glob("*.yaml"))) or "none"
    lines.append(f"packaged configs: {configs}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
