"""tf.distribute for `edgetl train`: one machine (`mirrored`) or several (`multi_worker`).

    TF_CONFIG ──> Workers(count, index, chief) + MultiWorkerMirroredStrategy   [before any other TF op]
    features: worker i computes images i::n into the shared cache_dir
              ── barrier (collective all-reduce, also checks every worker has the same cache digest)
              ── every worker reads the complete cache (computes what it cannot see there itself)
    head: global batch = batch_size, split evenly over the workers (auto-shard policy DATA)
    checkpoint: only the chief writes; on resume the chief's state is broadcast by all-reduce
    run folder: only the chief writes it; other workers write into a temp dir, deleted at the end

MultiWorkerMirroredStrategy configures TF's collective ops, which is only possible before the
TF runtime starts: `make_strategy` must run before anything creates a tensor. Every worker runs
the same code, so every collective (barrier, broadcast, each training step) is reached by all of
them in the same order; a worker that skips one leaves the others waiting. See docs/multi_worker.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgetl.errors import ConfigError


@dataclass(frozen=True)
class Workers:
    """Where this process sits in the cluster; the chief (index 0) writes every output."""

    count: int = 1
    index: int = 0

    @property
    def chief(self) -> bool:
        return self.index == 0


def read_tf_config(text: str | None) -> Workers:
    """TF_CONFIG's JSON -> Workers, or a ConfigError saying what is wrong with it."""
    hint = "see docs/multi_worker.md"
    if not text:
        raise ConfigError(
            f"strategy multi_worker needs the TF_CONFIG environment variable (cluster and task of this worker); {hint}"
        )
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc.msg} at character {exc.pos}); {hint}") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError(f"TF_CONFIG must hold a 'cluster' and a 'task' mapping; {hint}")
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise ConfigError(f"TF_CONFIG cluster has job(s) {', '.join(unknown)}; edgetl uses only 'chief' and 'worker'")
    jobs = {name: cluster.get(name) or [] for name in ("chief", "worker")}
    for name, hosts in jobs.items():
        if not isinstance(hosts, list) or not all(isinstance(h, str) and ":" in h for h in hosts):
            raise ConfigError(f"TF_CONFIG cluster '{name}' must be a list of \"host:port\" strings; got {hosts!r}")
    if len(jobs["chief"]) > 1 or not jobs["chief"] + jobs["worker"]:
        raise ConfigError(f"TF_CONFIG needs at most one 'chief' and at least one worker; {hint}")
    kind, index = task.get("type"), task.get("index", 0)
    if (
        kind not in jobs
        or not jobs[kind]
        or isinstance(index, bool)
        or not isinstance(index, int)
        or not 0 <= index < len(jobs[kind])
    ):
        raise ConfigError(f"TF_CONFIG task {task!r} is not in the cluster (type chief|worker, index < its count)")
    return Workers(
        count=len(jobs["chief"]) + len(jobs["worker"]), index=index + (len(jobs["chief"]) if kind == "worker" else 0)
    )


def _multi_worker():
    workers = read_tf_config(os.environ.get("TF_CONFIG"))  # checked before TF starts gRPC
    from edgetl._tf import tf

    # RING: collectives over gRPC, works on CPU-only hosts (NCCL needs GPUs)
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options), workers


def _local(factory_name: str):
    def make():
        from edgetl._tf import tf

        return getattr(tf.distribute, factory_name)(), Workers()

    return make


STRATEGIES = {"default": _local("get_strategy"), "mirrored": _local("MirroredStrategy"), "multi_worker": _multi_worker}


def make_strategy(name: str):
    """-> (strategy, Workers). For multi_worker: call before any other TensorFlow op."""
    return STRATEGIES[name]()


def sum_across_workers(strategy, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Element-wise sum of each array over the workers (one collective all-reduce, float64).

    Only the first replica of each worker contributes, so several local GPUs do not multiply it.
    """
    from edgetl._tf import tf

    local = max(1, len(strategy.extended.worker_devices))
    values = [tf.constant(np.asarray(a, np.float64)) for a in arrays]

    @tf.function
    def reduce():
        ctx = tf.distribute.get_replica_context()
        first = tf.equal(ctx.replica_id_in_sync_group % local, 0)
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, [tf.where(first, v, tf.zeros_like(v)) for v in values])

    result = strategy.experimental_local_results(strategy.run(reduce))[0]
    return [np.asarray(r).astype(np.asarray(a).dtype) for r, a in zip(result, arrays)]


def barrier(strategy, workers: Workers, token: str, what: str) -> None:
    """Wait for every worker; raise ConfigError when their `token`s (hex digests) differ."""
    t = float(int(token[:4], 16))
    n, s, s2 = sum_across_workers(strategy, [np.array([1.0, t, t * t])])[0]
    if int(n) != workers.count or n * s2 != s * s:  # all equal <=> n * sum(t^2) == sum(t)^2
        raise ConfigError(
            f"the {workers.count} workers disagree on the {what}; give them the same config, "
            f"data and weights (seed, weights file, edgetl/TensorFlow versions)"
        )


def shared_features(cache, strategy, workers: Workers, jobs: list[tuple[list, dict]]) -> list:
    """cache.extract(paths, **kwargs) for each job, each worker computing only its shard i::n.

    With cache_dir on a filesystem every worker sees, the final extract reads everything from
    the cache; without one it computes the other workers' shards itself (correct, no speed-up).
    """
    if workers.count == 1:
        return [cache.extract(paths, **kwargs) for paths, kwargs in jobs]
    mine = [cache.extract(paths[workers.index :: workers.count], **kwargs) for paths, kwargs in jobs]
    barrier(strategy, workers, cache.digest, "feature cache (base weights, size, cut layer)")
    cache.reload()
    done = [cache.extract(paths, **kwargs) for paths, kwargs in jobs]
    return [
        replace(d, computed=d.computed + m.computed, cached=d.cached - m.computed, seconds=d.seconds + m.seconds)
        for d, m in zip(done, mine)
    ]


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, weights: np.ndarray | None = None):
    """In-memory (already shuffled) arrays (+ per-row loss weights) -> batched dataset sharded by DATA:
    each global batch of batch_size is split across the workers (files cannot be sharded: there are none)."""
    from edgetl._tf import tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    rows = (x, y) if weights is None else (x, y, weights)
    return tf.data.Dataset.from_tensor_slices(rows).batch(batch_size).with_options(options)


def share_state(strategy, workers: Workers, state, model, optimizer):
    """The chief's checkpoint State (or None) on every worker, so all of them resume at the same epoch."""
    from edgetl.train.checkpoint import State

    if workers.count == 1:
        return state
    mine = state if workers.chief else None
    done = int(sum_across_workers(strategy, [np.array(mine.epoch + 1 if mine else 0)])[0])
    if done == 0:
        return None
    optimizer.build(model.trainable_variables)
    weights = mine.weights if mine else [np.zeros_like(w) for w in model.get_weights()]
    slots = mine.optimizer if mine else [np.zeros_like(np.asarray(v.numpy())) for v in optimizer.variables]
    shared = sum_across_workers(strategy, list(weights) + list(slots))
    return State("head", done - 1, list(mine.history) if mine else [], shared[: len(weights)], shared[len(weights) :])


def output_folder(out: Path, workers: Workers) -> Path:
    """The chief writes `out`; other workers write into a fresh temp dir (TF's multi-worker guidance)."""
    return out if workers.chief else Path(tempfile.mkdtemp(prefix=f"edgetl-worker{workers.index}-"))


def discard(out: Path, workers: Workers) -> None:
    if not workers.chief:
        shutil.rmtree(out, ignore_errors=True)
