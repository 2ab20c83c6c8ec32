"""The device side runs on Python 3.10 (Jetson JetPack 6): no 3.11-only construct in it.

1. vermin (a static minimum-version checker, in the dev extra) over edgetl/runtime, the CLI
   and errors.py must report a minimum of 3.10 or lower;
2. when a Python 3.10 with numpy, Pillow, click and PyYAML is available (tests/python310.py:
   EDGETL_PY310=path, the venv scripts/install_test_extras.sh makes, pyenv, `python3.10` on
   PATH), the runtime is imported and exercised under it for real.
Each part skips when its tool is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from python310 import find_python310

ROOT = Path(__file__).resolve().parents[1]
DEVICE_CODE = ["edgetl/runtime", "edgetl/errors.py", "edgetl/cli", "edgetl/__init__.py"]


def test_vermin_says_the_device_code_needs_at_most_python_3_10():
    vermin = shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed (pip install vermin, or the dev extra)")
    done = subprocess.run(
        [vermin, "-t=3.10-", "--no-tips", "--violations", "--eval-annotations", *DEVICE_CODE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"Minimum required versions: (\d+)\.(\d+)", done.stdout)
    assert found and (int(found.group(1)), int(found.group(2))) <= (3, 10), done.stdout


SMOKE = r"""
import io, json, sys, tempfile
from pathlib import Path
import numpy as np
from PIL import Image
assert sys.version_info[:2] == (3, 10), sys.version
import edgetl.runtime.runner, edgetl.runtime.retrain, edgetl.runtime.bench, edgetl.runtime.headstore  # noqa
from edgetl.runtime.image import load_rgb, preprocess
from edgetl.runtime.head import NumpyHead
from edgetl.runtime.bundle import load_bundle
from edgetl.errors import BundleError, ImageError
buf = io.BytesIO(); Image.new("CMYK", (50, 30), (0, 90, 90, 0)).save(buf, "JPEG")
x = preprocess(load_rgb(io.BytesIO(buf.getvalue()), 24), 1 / 127.5, -1.0)
assert x.shape == (24, 24, 3) and -1 <= x.min() <= x.max() <= 1
try:
    load_rgb(io.BytesIO(b"not an image"), 24)
except ImageError:
    pass
tmp = Path(tempfile.mkdtemp())
head = NumpyHead(["a", "b"], "avg", "softmax", "relu", [np.ones((3, 2), np.float32)], [np.zeros(2, np.float32)])
loaded = NumpyHead.load(head.save(tmp / "head.npz"))
assert loaded.predict(np.ones((1, 4, 4, 3))).shape == (1, 2)
(tmp / "manifest.json").write_text(json.dumps({"format_version": 9}))
try:
    load_bundle(tmp)
except BundleError as exc:
    assert "newer" in str(exc)
from click.testing import CliRunner
from edgetl.cli import main
result = CliRunner().invoke(main, ["run", str(tmp), "x.jpg"])
assert result.exit_code == 2 and "error: bundle format 9 is newer" in result.output, result.output
print("py310 ok")
"""


def test_runtime_and_cli_work_under_python_3_10():
    python = find_python310("numpy, PIL, click, yaml")
    if python is None:
        pytest.skip("no Python 3.10 with numpy, Pillow, click and PyYAML (set EDGETL_PY310=/path/to/python3.10)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([python, "-c", SMOKE], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and "py310 ok" in done.stdout, done.stdout + done.stderr
