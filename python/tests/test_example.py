"""The transformer-block example runs, matches its SDPA twin, and exports the plugin node."""
import os
import re
import subprocess
import sys

import fattn

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "examples", "transformer_block", "transformer_block.py")


def _env():
    """This process's fattn for the example, whether installed or on the path."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fattn.__file__)))
    path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path)


def test_example_small_on_cpu(tmp_path):
    path = tmp_path / "block.onnx"
    run = subprocess.run([sys.executable, EXAMPLE, "--hidden", "128", "--heads", "4", "--seq", "37",
                          "--dtype", "float32", "--device", "cpu", "--export", str(path)],
                         capture_output=True, text=True, timeout=600, env=_env())
    assert run.returncode == 0, run.stderr[-3000:]
    err = float(re.search(r"relative L2 difference to the SDPA block (\S+)", run.stdout).group(1))
    assert err < 1e-5
    assert ("attn::CustomAttnPlugin" in run.stdout and "'mode': 0" in run.stdout
            and "'plugin_version': b'1'" in run.stdout)
    assert path.exists() and (tmp_path / "block.onnx.data").exists()
