"""The package as a user meets it: pip builds it, and it says where it looked for libfattn."""
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


def test_pip_builds_a_wheel_with_the_package(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(PACKAGE_ROOT, source, ignore=shutil.ignore_patterns("__pycache__", "*.so*"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(source)], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").iterdir()
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("__init__", "capi", "ops", "functional", "export"):
        assert f"fattn/{module}.py" in names


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

    missing = tmp_path / "nowhere" / "libfattn.so"
    env["FATTN_LIBRARY"] = str(missing)
    env.pop("LD_LIBRARY_PATH", None)  # the system search would find the library through it
    run = _python("import torch, fattn; fattn.custom_attn(*[torch.ones(1, 2, 1, 4)] * 3)", env,
                  tmp_path)
    assert run.returncode != 0
    assert "LibraryNotFound" in run.stderr and str(missing) in run.stderr
    assert str(tmp_path / "fattn" / "lib" / "libfattn.so") in run.stderr
