"""Every fenced block of README.md and docs/*.md, classified; every shell block run.

A fence's info string says what the block is: ``sh`` (or ``bash``) blocks are shell commands and
are run here, in file order, from the repository root with ``bash -euo pipefail``; words after
``sh`` name what the block needs beyond this machine, and the block is skipped with that reason
when it is missing:

    gpu        a CUDA device (nvidia-smi lists one)
    tensorrt   TensorRT's headers: $TENSORRT_ROOT holding include/NvInferRuntime.h
    trtexec    TensorRT's trtexec on PATH
    libfuzzer  clang able to link -fsanitize=fuzzer
    cuda       a build with the CUDA kernels (see below)
    ci         the block is .ci/run's own command (scripts/test.sh): running it here would recurse

On a machine without a GPU the blocks build CPU-only (FATTN_ENABLE_CUDA=OFF in their
environment, which CMake and scripts/demo.sh take as the default): scripts/test.sh's release
build already compiles the CUDA kernels once, and compiling them again for each block would
triple the run. FATTN_DOCS_CUDA=1 keeps CUDA on anyway; blocks marked ``cuda`` need it.

Other blocks (``text``, ``python``, ...) are not commands. A fence without an info string fails
the test: every block must say which it is. pip installs go to a throwaway virtual environment
(with the system's packages visible), so running the blocks never installs into the machine's
Python. A block that exits 77 reports itself skipped, as CTest's convention.
"""
import functools
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHELLS = {"sh", "bash", "shell"}
FENCE = re.compile(r"^(\s*)```(.*)$")


def _blocks():
    """(file, line, info words, text) for every fenced block, in file order."""
    files = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
    for path in files:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            indent, info = m.group(1), m.group(2).split()
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            i += 1
            yield os.path.relpath(path, REPO), start, info, "\n".join(body) + "\n"


BLOCKS = list(_blocks())


def _have_gpu():
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                              timeout=60).stdout.startswith("GPU")
    except (OSError, subprocess.TimeoutExpired):
        return False


def _have_libfuzzer():
    cc = shutil.which("clang")
    if not cc:
        return False
    probe = "int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n"
    return subprocess.run([cc, "-x", "c", "-fsanitize=fuzzer", "-", "-o", os.devnull],
                          input=probe, capture_output=True, text=True).returncode == 0


def _cuda_builds():
    return os.environ.get("FATTN_DOCS_CUDA") == "1" or _need_met("gpu")


NEEDS = {
    "gpu": (_have_gpu, "needs a CUDA device"),
    "tensorrt": (lambda: os.path.exists(os.path.join(os.environ.get("TENSORRT_ROOT", "/nonexistent"),
                                                     "include", "NvInferRuntime.h")),
                 "needs TensorRT's headers ($TENSORRT_ROOT/include)"),
    "trtexec": (lambda: shutil.which("trtexec") is not None, "needs TensorRT's trtexec"),
    "libfuzzer": (_have_libfuzzer, "needs clang with libFuzzer"),
    "cuda": (lambda: _cuda_builds(), "needs a CUDA build (no GPU here; FATTN_DOCS_CUDA=1 forces one)"),
    "ci": (lambda: False, "is .ci/run's own command (it runs this harness)"),
}


@functools.lru_cache(maxsize=None)
def _need_met(word):
    return NEEDS[word][0]()


@pytest.fixture(scope="session")
def venv(tmp_path_factory):
    """A virtual environment over the system's packages, first on PATH for every block."""
    path = tmp_path_factory.mktemp("docs-venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(path)], check=True)
    return path


def _id(block):
    path, line, info, _ = block
    return f"{path}:{line}:{'-'.join(info) or 'untyped'}"


def test_every_fence_says_what_it_is():
    untyped = [f"{path}:{line}" for path, line, info, _ in BLOCKS if not info]
    assert not untyped, f"fenced blocks without an info string (sh to run, text if not): {untyped}"
    shell = [b for b in BLOCKS if b[2] and b[2][0] in SHELLS]
    unknown = [f"{p}:{n}: {w}" for p, n, info, _ in shell for w in info[1:] if w not in NEEDS]
    assert not unknown, f"unknown needs {unknown}; known: {sorted(NEEDS)}"


SHELL_BLOCKS = [b for b in BLOCKS if b[2] and b[2][0] in SHELLS]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[_id(b) for b in SHELL_BLOCKS])
def test_shell_block(block, venv):
    path, line, info, text = block
    for word in info[1:]:
        if word in NEEDS and not _need_met(word):
            pytest.skip(NEEDS[word][1])
    env = dict(os.environ, VIRTUAL_ENV=str(venv),
               PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONHOME", None)
    if not _cuda_builds():
        env["FATTN_ENABLE_CUDA"] = "OFF"
    print(f"--- {path}:{line}\n{text}", flush=True)
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1500)
    print(run.stdout[-6000:])
    if run.returncode == 77:
        pytest.skip(f"{path}:{line}: the block reported itself skipped")
    assert run.returncode == 0, f"{path}:{line}: exited {run.returncode}\n{run.stdout[-3000:]}"
