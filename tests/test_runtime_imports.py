"""The device side stays light (fresh interpreter, blocking finder).

Every edgetl.runtime module imports with the training side of edgetl (train, models, export,
report) and the TensorFlow stack blocked; then the device commands run with the TensorFlow
stack still blocked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from bundle_fixture import fresh_bundle, make_dataset

CHILD = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    BANNED = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "tf2onnx", "matplotlib")
    TRAINING_SIDE = ("edgetl.train", "edgetl.models", "edgetl.export", "edgetl.report", "edgetl._tf")

    class Block:
        blocked = BANNED + TRAINING_SIDE

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked or ".".join(name.split(".")[:2]) in self.blocked:
                raise ImportError(f"device code imported {name}")
            return None

    block = Block()
    sys.meta_path.insert(0, block)
    import edgetl.runtime
    runtime = sorted(m.name for m in pkgutil.iter_modules(edgetl.runtime.__path__))
    for name in runtime:
        importlib.import_module(f"edgetl.runtime.{name}")
    training = sorted(m for m in sys.modules if m.startswith(TRAINING_SIDE))
    block.blocked = BANNED  # the CLI registers every command (their flags come from the training configs)
    from edgetl.cli import main
    codes = []
    for args in (["run", sys.argv[1], sys.argv[2], "--json"],
                 ["update-head", sys.argv[1], "--data", sys.argv[3], "--epochs", "5"],
                 ["run", sys.argv[1], sys.argv[2]],
                 ["rollback-head", sys.argv[1]]):
        try:
            main(args, standalone_mode=False)
            codes.append(0)
        except SystemExit as exc:
            codes.append(exc.code)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BANNED)
    print(json.dumps({"codes": codes, "loaded": loaded, "runtime": runtime, "training": training}))
""")


def test_device_commands_never_import_tensorflow(tmp_path_factory, tmp_path):
    bundle = fresh_bundle(tmp_path_factory, tmp_path / "bundle")
    data = make_dataset(tmp_path / "data", {"blue": 6, "red": 6}, seed=3)
    image = next((data / "red").iterdir())
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(bundle), str(image), str(data)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [] and result["training"] == []
    assert {"runner", "retrain", "interpreter", "formats", "feature_store", "cameras", "paths"} <= set(
        result["runtime"]
    )
    assert result["codes"] == [0, 0, 0, 0]
    first = json.loads(proc.stdout.splitlines()[0])
    assert first["label"] == "red"
