#!/usr/bin/env python3
"""Run `edgetl train --strategy multi_worker` as N worker processes on this machine.

    python scripts/multi_worker_local.py --workers 2 -- --data DATA --out runs/mw --cache-dir /tmp/cache ...

Picks N free localhost ports, gives each process its TF_CONFIG (worker 0 is the chief and
writes the run folder), streams nothing but keeps each worker's log in LOG_DIR/worker-<i>.log,
and prints one JSON line: {"workers", "seconds", "returncodes", "logs"}. When one worker
fails or the timeout passes, every other worker is killed (its whole process group), so no
gRPC server is left listening. The same helper is used by tests/test_multi_worker.py.
On several machines, start `edgetl train` yourself with TF_CONFIG per machine (docs/multi_worker.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN = "from edgetl.cli import main; main()"


def free_ports(n: int) -> list[int]:
    """n distinct ports the OS says are free right now (all sockets held open until all are picked)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(hosts: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # each worker leads its own session
            except ProcessLookupError:
                pass
    for p in procs:
        p.wait()


def launch(
    workers: int,
    train_args: list[str],
    log_dir: Path,
    timeout: float = 300.0,
    env: dict | None = None,
    worker_env: list[dict] | None = None,
) -> dict:
    """Start the workers, wait for all; kill all on the first failure or at the timeout."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    hosts = [f"localhost:{p}" for p in free_ports(workers)]
    procs, logs = [], []
    start = time.time()
    try:
        for i in range(workers):
            penv = {
                **os.environ,
                **(env or {}),
                **((worker_env or [{}] * workers)[i]),
                "TF_CONFIG": tf_config(hosts, i),
            }
            log = log_dir / f"worker-{i}.log"
            logs.append(str(log))
            with open(log, "wb") as fh:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", TRAIN, "train", "--strategy", "multi_worker", *train_args],
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                        env=penv,
                        start_new_session=True,
                    )
                )
        while any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break  # one failed: the others would wait for it forever
            if time.time() - start > timeout:
                break
            time.sleep(0.2)
    finally:
        _kill(procs)  # no-op for workers that already exited
    codes = [p.returncode for p in procs]
    timed_out = time.time() - start > timeout and any(c != 0 for c in codes)
    return {
        "workers": workers,
        "hosts": hosts,
        "seconds": round(time.time() - start, 2),
        "returncodes": codes,
        "timed_out": timed_out,
        "logs": logs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--log-dir", default=None, help="Default: a new temp dir.")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then `edgetl train` flags")
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="edgetl-mw-"))
    result = launch(args.workers, train_args, log_dir, args.timeout)
    print(json.dumps(result))
    return 0 if all(c == 0 for c in result["returncodes"]) else 1


if __name__ == "__main__":
    sys.exit(main())
