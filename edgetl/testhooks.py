"""Environment hooks that let tests catch a real `edgetl train` process mid-phase.

EDGETL_TEST_SLOW_STEP=<seconds> sleeps that long after every batch the base runs during
feature extraction and after every training epoch's checkpoint, so tests/test_resume_kill.py
can SIGKILL a real process during extraction, head training or fine-tuning. Unset (the
normal case) it costs one dictionary lookup. It changes timing only, never results.
"""

from __future__ import annotations

import os
import time

SLOW_STEP_ENV = "EDGETL_TEST_SLOW_STEP"


def slow_step() -> None:
    value = os.environ.get(SLOW_STEP_ENV)
    if value:
        time.sleep(float(value))
