"""The ``mhe`` command: train, evaluate, reproduce the figures, describe the installation.

``mhe train --config <yaml> [key=value ...]`` trains the experiment registered for ``data.dataset``
(see :func:`mhe.train.register_experiment`), on one process or under ``torchrun`` on many;
``mhe evaluate --checkpoint <path>`` rebuilds a checkpoint's experiment and prints (and optionally
writes as JSON) the metrics of its evaluation split; ``mhe reproduce`` runs the notebook sequence;
``mhe info`` prints versions, devices, body-model files and what is registered. ``--plugin MODULE``
imports a module first, so user code can register its own experiments and objectives.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path

from mhe.checkpoint import CheckpointMismatchError
from mhe.config import ConfigError

# errors a user can fix from the message alone: printed without a traceback
USER_ERRORS = (ConfigError, CheckpointMismatchError, FileNotFoundError, FileExistsError, ImportError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mhe`` command (sub-commands train, evaluate, reproduce, info)."""
    parser = argparse.ArgumentParser(
        prog="mhe", description="Multi-hypothesis 3D hand and body pose with MHEntropy."
    )
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (it may register experiments / objectives); repeatable")
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train an experiment from a YAML config",
                        description="Train the experiment a config describes. Launch with "
                        "`torchrun --nproc_per_node N -m mhe.cli train ...` for several GPUs/processes.")
    tr.add_argument("--config", required=True,
                    help="YAML file, or the name of a packaged config (e.g. hand_mhentropy)")
    tr.add_argument("overrides", nargs="*", metavar="key=value",
                    help="config overrides, e.g. train.lr=1e-3 objective.w_ent=0")
    tr.add_argument("--resume", action="store_true", help="continue from <train.out_dir>/last.pt if present")
    tr.add_argument("--overwrite", action="store_true", help="start again even if train.out_dir holds a run")
    tr.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint",
                        description="Rebuild a checkpoint's experiment and report its evaluation metrics.")
    ev.add_argument("--checkpoint", required=True, help="a checkpoint written by `mhe train` (last.pt), or a shipped one's name "
                    "(hand_mhentropy, hand_nll, ...)")
    ev.add_argument("--data", help="dataset to evaluate on (default: the one it was trained on), "
                    "e.g. synthetic-hands or ho3d")
    ev.add_argument("--root", help="dataset folder (for real data such as HO3D v3)")
    ev.add_argument("--samples", type=int, default=200, help="hypotheses per item (official: 200)")
    ev.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (official: 0.8)")
    ev.add_argument("--batch-size", type=int, help="items per evaluation batch")
    ev.add_argument("--max-items", type=int, help="evaluate only the first N items")
    ev.add_argument("--device", help="cpu, cuda, ... (default: CUDA when present)")
    ev.add_argument("--json", metavar="OUT", help="also write the result as JSON to OUT")

    rep = sub.add_parser("reproduce", help="run every notebook with SMOKE=False and write figures/")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--only", nargs="*", help="substrings of notebook names to run")

    sub.add_parser("info", help="versions, devices, body-model files, registered experiments")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mhe`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        for module in args.plugin:
            importlib.import_module(module)
        if args.command == "train":
            return _train(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "reproduce":
            from mhe.notebooks import reproduce

            reproduce(args.seed, args.only)
            return 0
        print(info_text())
        return 0
    except USER_ERRORS as e:
        print(f"mhe {args.command}: error: {e}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from mhe.config import dump_config, load_config

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    if args.no_progress:
        overrides.append("train.progress=false")
    cfg = load_config(args.config, overrides)
    _check_device(cfg.device)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0

    from mhe.distributed import cleanup_distributed, init_distributed
    from mhe.train import train_experiment

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
            shown = ", ".join(f"{k}={v:.4g}" for k, v in result.val_metrics.items() if k not in ("step", "epoch"))
            print(f"[mhe] validation: {shown}")
    return 0


def _check_device(preference: str | None) -> None:
    from mhe.utils import default_device

    try:
        default_device(preference)
    except RuntimeError as e:  # CUDA asked for on a machine without it
        raise ConfigError(str(e)) from None


def _evaluate(args: argparse.Namespace) -> int:
    from mhe.train import evaluate_checkpoint

    _check_device(args.device)
    result = evaluate_checkpoint(
        args.checkpoint,
        dataset=args.data,
        root=args.root,
        num_samples=args.samples,
        temperature=args.temperature,
        batch_size=args.batch_size,
        max_items=args.max_items,
        device=args.device,
    )
    print(f"{result['checkpoint']} (step {result['step']}) on {result['dataset']}: {result['items']} items, "
          f"S = {result['num_samples']}, temperature {result['temperature']}")
    width = max((len(k) for k in result["metrics"]), default=0)
    for k, v in result["metrics"].items():
        print(f"  {k:<{width}}  {v:.4f}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
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
    from mhe.train import available_experiments
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
