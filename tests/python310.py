"""Find a Python 3.10 (Jetson JetPack 6's version) to run device code under, for the tests that need one."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess


def find_python310(imports: str = "") -> str | None:
    """The first Python 3.10 that runs and can `import <imports>` (e.g. "numpy, PIL"), else None.

    Looked for in order: $EDGETL_PY310, the venv scripts/install_test_extras.sh makes
    (~/.cache/edgetl/py310-venv), pyenv's 3.10 installs, python3.10 on PATH.
    """
    candidates = [
        os.environ.get("EDGETL_PY310"),
        os.path.expanduser("~/.cache/edgetl/py310-venv/bin/python"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10"))),
        shutil.which("python3.10"),
    ]
    probe = "import sys, venv; assert sys.version_info[:2] == (3, 10)" + (f"; import {imports}" if imports else "")
    for exe in filter(None, candidates):
        if not os.path.exists(exe):
            continue
        if subprocess.run([exe, "-c", probe], capture_output=True, timeout=60).returncode == 0:
            return exe
    return None
