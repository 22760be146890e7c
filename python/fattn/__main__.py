"""python -m fattn: which libfattn this environment runs, and whether it has the CUDA kernels."""
import sys

from . import capi

try:
    found = capi.info()
except capi.LibraryNotFound as err:
    sys.exit(f"fattn: {err}")
kernels = "CUDA kernels and the CPU forward" if found["cuda"] else "CPU forward only (built without nvcc)"
print(f"fattn {found['version']}: {found['library']} (found by: {found['found_by']}); {kernels}")
