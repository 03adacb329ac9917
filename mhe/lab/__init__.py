"""mhe.lab: the laboratory around the method.

The core package (``mhe`` minus this subpackage) is the method itself: body models, data,
flows, objectives, models, metrics, evaluation, diagnostics and figures. Everything here is
the machinery that *runs* the method and keeps its results:

- :mod:`mhe.lab.experiments`  which model and data a config names; train / evaluate / load runs
- :mod:`mhe.lab.train`        the trainer (checkpoints, resume, interrupts, DDP)
- :mod:`mhe.lab.checkpoint`   atomic, resumable checkpoints and the shipped ones
- :mod:`mhe.lab.distributed`  torchrun / DDP set-up and tear-down
- :mod:`mhe.lab.runlog`       the per-run log files
- :mod:`mhe.lab.config_io`    configs to and from YAML, overrides, diffs
- :mod:`mhe.lab.cli`          the ``mhe`` command
- :mod:`mhe.lab.report`       the README / figure-caption blocks generated from results
- :mod:`mhe.lab.paper`        the paper's published numbers, for the report's comparisons
- :mod:`mhe.lab.notebooks`    running and stripping the notebooks

The lab imports the core; the core never imports the lab (``tests/test_architecture.py``
checks this), so the method can be read, tested and reused without the lab.
"""
