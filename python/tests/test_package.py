"""The package as a user meets it: pip builds it, and it says where it looked for libfattn."""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import zipfile

import fattn

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code, env, cwd):
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_pip_builds_a_wheel_that_carries_libfattn(tmp_path):
    """pip builds libfattn through the project's CMake and ships it in the wheel; installed away
    from the repository with no environment variable, the package finds and runs it. CUDA is off
    to keep the build short (the CUDA variant differs only in what CMake compiles)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), "-C",
                    "cmake.define.FATTN_ENABLE_CUDA=OFF", PACKAGE_ROOT], check=True, timeout=600)
    (wheel,) = (tmp_path / "dist").iterdir()
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("__init__", "capi", "ops", "functional", "export", "trt"):
        assert f"fattn/{module}.py" in names
    assert "fattn/lib/libfattn.so" in names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("FATTN_LIBRARY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    code = """
import json, math, torch, fattn
q, k, v = (torch.randn(1, 7, 2, 16, generator=torch.Generator().manual_seed(i)) for i in range(3))
out = fattn.custom_attn(q, k, v)
ref = torch.nn.functional.scaled_dot_product_attention(
    *(t.double().transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
print(json.dumps(dict(fattn.info(), err=((out.double() - ref).norm() / ref.norm()).item())))
"""
    run = _python(code, env, tmp_path)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["library"] == str(site / "fattn" / "lib" / "libfattn.so")
    assert found["found_by"] == "package" and found["cuda"] is False
    assert found["err"] < 1e-5
    run = subprocess.run([sys.executable, "-m", "fattn"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "found by: package" in run.stdout and "CPU forward only" in \
        run.stdout, run.stdout + run.stderr


def test_fattn_library_wins_and_a_missing_library_is_reported(tmp_path):
    # A copy of the package away from the repository, so no build folder is near it.
    shutil.copytree(os.path.join(PACKAGE_ROOT, "fattn"), tmp_path / "fattn",
                    ignore=shutil.ignore_patterns("__pycache__", "lib"))
    library = os.path.realpath(fattn.capi.load_library()._name)
    chosen = tmp_path / "chosen" / "libfattn.so"
    chosen.parent.mkdir()
    shutil.copy(library, chosen)
    env = dict(os.environ, FATTN_LIBRARY=str(chosen), PYTHONPATH=str(tmp_path))
    code = "import fattn; print(fattn.capi.load_library()._name)"
    run = _python(code, env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(chosen)

    # A loadable library in the package's lib/ must not stand in for a FATTN_LIBRARY that is missing.
    (tmp_path / "fattn" / "lib").mkdir()
    shutil.copy(library, tmp_path / "fattn" / "lib" / "libfattn.so")
    missing = tmp_path / "nowhere" / "libfattn.so"
    env["FATTN_LIBRARY"] = str(missing)
    run = _python("import torch, fattn; fattn.custom_attn(*[torch.ones(1, 2, 1, 4)] * 3)", env,
                  tmp_path)
    assert run.returncode != 0
    assert "LibraryNotFound" in run.stderr and str(missing) in run.stderr
    assert str(tmp_path / "fattn" / "lib" / "libfattn.so") not in run.stderr


def test_capi_structs_match_the_library():
    """fattn_params_bshd fills a struct whose bytes start as 0xab: every field must read back as
    the library wrote it, and nothing past ctypes' size may be touched."""
    capi = fattn.capi
    lib = capi.load_library()
    lib.fattn_params_bshd.restype = None
    lib.fattn_params_bshd.argtypes = [ctypes.c_void_p] + [ctypes.c_int64] * 6 + [ctypes.c_int] + \
        [ctypes.c_void_p] * 4
    size = ctypes.sizeof(capi.Params)
    buffer = (ctypes.c_ubyte * (size + 64))(*([0xab] * (size + 64)))
    addresses = {"q": 0x1000, "k": 0x2000, "v": 0x3000, "o": 0x4000}
    lib.fattn_params_bshd(buffer, 2, 3, 5, 8, 4, 64, capi.DTYPE_BF16, *addresses.values())
    p = capi.Params.from_buffer(buffer)
    assert (p.batch, p.seqlen_q, p.seqlen_kv, p.heads_q, p.heads_kv, p.head_dim) == (2, 3, 5, 8, 4, 64)
    assert (p.dtype, p.mode, p.causal, p.scale) == (capi.DTYPE_BF16, capi.MODE_NATIVE, 0, 0.0)
    for name, seqlen, heads in (("q", 3, 8), ("k", 5, 4), ("v", 5, 4), ("o", 3, 8)):
        t = getattr(p, name)
        assert t.data == addresses[name], name
        assert (t.stride_batch, t.stride_seq, t.stride_head) == (seqlen * heads * 64, heads * 64, 64), name
    assert p.lse is None
    assert bytes(buffer[size:]) == b"\xab" * 64, "the library's fattn_params is larger than capi.Params"
