"""mhe.lab: the laboratory around the method.

The core package (``mhe`` minus this subpackage) is the method itself: body models, data,
flows, objectives, models, metrics, evaluation, diagnostics and figures. Everything here is
the machinery that *runs* the method and keeps its results:

- :mod:`mhe.lab.builders`     which model and data a config names: the experiment builders and their registry
- :mod:`mhe.lab.experiments`  whole runs: train, evaluate a checkpoint, load or train a shipped model
- :mod:`mhe.lab.train`        the trainer (checkpoints, resume, interrupts, DDP), stepping through
  :func:`mhe.training.fit`; its data order (:mod:`~mhe.lab.train_data`), state on disk
  (:mod:`~mhe.lab.train_state`) and objective arguments (:mod:`~mhe.lab.objective_args`)
- :mod:`mhe.lab.checkpoint`   atomic, resumable checkpoints and the shipped ones
- :mod:`mhe.lab.distributed`  torchrun / DDP set-up and tear-down
- :mod:`mhe.lab.runlog`       the per-run log files
- :mod:`mhe.lab.config_io`    configs to and from YAML, overrides, diffs
- :mod:`mhe.lab.cli`          the ``mhe`` command
- :mod:`mhe.lab.diagnostics_runs` the committed diagnostics tables: settings, test split, choices read back
- :mod:`mhe.lab.report`       the README / notebook results text generated from the committed CSVs
- :mod:`mhe.lab.gallery`      the figure gallery and its captions
- :mod:`mhe.lab.paper`        the paper's published numbers, beside ours
- :mod:`mhe.lab.notebooks`    running and stripping the notebooks

The lab imports the core; the core never imports the lab (``tests/test_architecture.py``
checks this), so the method can be read, tested and reused without the lab (docs/architecture.md).
"""
