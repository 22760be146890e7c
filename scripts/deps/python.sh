#!/usr/bin/env bash
# Python packages for the PyTorch op's tests (python/tests), all from PyPI: torch, onnx,
# onnxscript, onnxruntime, pytest, numpy, and scikit-build-core (the package's build backend,
# which test_package.py uses without build isolation).
# PyPI's torch wheel for Linux x86-64 is the CUDA build (with nvidia-* runtime wheels, ~3 GB);
# it runs on machines without a GPU, which is all CI needs. Measured: 235 s for all of the
# packages below into a fresh venv with no pip cache on the 2-core development machine, well
# inside CI's 90 minutes, so CI runs the CPU-side tests itself.
# Idempotent: packages that already import are left alone.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../deps-lib.sh"

pip_install_missing python torch onnx onnxscript onnxruntime pytest numpy scikit_build_core
