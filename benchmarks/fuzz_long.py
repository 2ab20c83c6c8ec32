"""The fuzz properties of tests/test_fuzz.py (plus two more), run for minutes instead of seconds.

    python benchmarks/fuzz_long.py [--minutes 5] [--examples 500]

Rounds of every property, `--examples` random examples each (fresh seed per round, no example
database), until the time is up. Property: the only exception that escapes a parser is its
one-line EdgetlError. Prints JSON: examples run per property, failures (with the falsifying
example as hypothesis reports it), seconds. Exit code 1 if anything failed.

Extra properties here: run.json documents (edgetl.train.run_folder.open_run may raise only
RunFolderError) and mutated head.npz bytes (NumpyHead.load may raise only BundleError).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_fuzz  # noqa: E402

from edgetl.errors import BundleError, RunFolderError  # noqa: E402


class TempFactory:
    """Stand-in for pytest's tmp_path_factory."""

    def __init__(self, root: Path):
        self.root, self.n = root, 0

    def mktemp(self, name: str) -> Path:
        self.n += 1
        path = self.root / f"{name}{self.n}"
        path.mkdir()
        return path


_SCRATCH = Path(tempfile.mkdtemp(prefix="edgetl_fuzz_"))
_RUN = _SCRATCH / "run"
_RUN.mkdir()
for _name in ("model.keras", "labels.txt", "config.yaml", "splits.json"):
    (_RUN / _name).write_text("{}\n")


json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "edgetl_version",
                    "files",
                    "model.keras",
                    "labels.txt",
                    "sha256",
                    "size_bytes",
                    "classes",
                    "../x",
                    "input_size",
                ]
            ),
            c,
            max_size=5,
        )
    ),
    max_leaves=10,
)


@given(doc=json_docs, version=st.sampled_from(["0.1.0", "0.1", None, 1, "9.9"]))
def run_json_only_raises_run_folder_error(doc, version):
    from edgetl.train.run_folder import open_run

    if isinstance(doc, dict) and version is not None:
        doc = {**doc, "edgetl_version": version}
    (_RUN / "run.json").write_text(json.dumps(doc))
    try:
        open_run(_RUN)
    except RunFolderError as exc:
        assert "\n" not in str(exc)


def _head_bytes() -> bytes:
    from edgetl.runtime.head import NumpyHead

    head = NumpyHead(
        ["a", "b", "c"], "avg", "softmax", "relu", [np.ones((4, 3), np.float32)], [np.zeros(3, np.float32)]
    )
    return head.to_bytes()


HEAD = _head_bytes()


@given(cut=st.integers(0, len(HEAD)), flips=st.lists(st.integers(0, len(HEAD) - 1), max_size=4))
def head_npz_only_raises_bundle_error(cut, flips):
    from edgetl.runtime.head import NumpyHead

    data = bytearray(HEAD)
    for i in flips:
        data[i] ^= 0xFF
    path = _SCRATCH / "head.npz"
    path.write_bytes(bytes(data[: len(data) - cut]))
    try:
        NumpyHead.load(path)
    except BundleError as exc:
        assert "\n" not in str(exc)


PROPERTIES = {
    "decoder_random_bytes": (test_fuzz.test_decoder_on_random_bytes, False),
    "decoder_mutated_images": (test_fuzz.test_decoder_on_mutated_real_images, False),
    "config_builder": (test_fuzz.test_config_builder_only_raises_config_error, False),
    "manifest_loader": (test_fuzz.test_manifest_loader_only_raises_bundle_error, True),
    "manifest_paths": (test_fuzz.test_manifest_paths_never_escape_the_bundle, True),
    "run_json": (run_json_only_raises_run_folder_error, False),
    "head_npz": (head_npz_only_raises_bundle_error, False),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--examples", type=int, default=500, help="Examples per property per round.")
    args = parser.parse_args()
    factory = TempFactory(_SCRATCH)
    counts = {name: 0 for name in PROPERTIES}
    failures: list[dict] = []
    failed: set[str] = set()
    start = time.time()
    deadline = start + args.minutes * 60
    rounds = 0
    while time.time() < deadline and len(failed) < len(PROPERTIES):
        rounds += 1
        for name, (test, needs_factory) in PROPERTIES.items():
            if name in failed or time.time() >= deadline:
                continue
            inner = test.hypothesis.inner_test

            def counted(*a, _inner=inner, _name=name, **kw):
                counts[_name] += 1
                return _inner(*a, **kw)

            test.hypothesis.inner_test = counted
            test._hypothesis_internal_use_settings = settings(
                max_examples=args.examples,
                deadline=None,
                database=None,
                derandomize=False,
                suppress_health_check=list(HealthCheck),
            )
            try:
                test(factory) if needs_factory else test()
            except Exception as exc:  # noqa: BLE001 - a finding: record it and go on with the others
                failed.add(name)
                failures.append(
                    {
                        "property": name,
                        "error": f"{type(exc).__name__}: {str(exc)[:2000]}",
                        "traceback": traceback.format_exc()[-3000:],
                    }
                )
            finally:
                test.hypothesis.inner_test = inner
    result = {
        "minutes": args.minutes,
        "rounds": rounds,
        "examples_per_round": args.examples,
        "examples": counts,
        "examples_total": sum(counts.values()),
        "failures": failures,
        "seconds": round(time.time() - start, 1),
    }
    print(json.dumps(result, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
