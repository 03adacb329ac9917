#!/usr/bin/env bash
# The GPU check as one step: CUDA-marked tests, training throughput (keypoint and image models), DDP on
# the visible GPUs and a few hundred steps of mhe/configs/hand_mhentropy_image_gpu.yaml; writes ONE JSON.
#   benchmarks/gpu_check.sh [--out gpu_check.json] [--gpu-steps 300] ...
#   benchmarks/gpu_check.sh --device cpu --dry-run --out /tmp/gpu_check.json   # CPU dry run (tiny sizes)
# PYTHON picks the interpreter (default: the repository's .venv when there, else python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
cd "$root"
exec "$PYTHON" "$here/gpu_check.py" "$@"
