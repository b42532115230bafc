"""Data-parallel sharding: one mesh axis ``"data"``, parameters replicated, batches split on axis 0.

Every run, on one CPU or on a TPU pod slice, uses the same three pieces:

* :func:`make_data_mesh` builds a 1-D :class:`jax.sharding.Mesh` over the first ``N`` visible
  devices (all of them by default; ``lrdist-jax train --devices N`` limits it);
* :func:`replicate` puts parameters and optimizer state on every device of the mesh;
* :func:`shard_batch` turns a host batch (a dict of numpy arrays) into global :class:`jax.Array`
  values split along their first axis, so a jitted step computes the per-device gradients and XLA
  inserts the all-reduce (the mesh axis is ``AxisType.Auto``: the step needs no annotations).

A data-parallel step therefore computes the same mean loss and gradients as a one-device step on
the same global batch, up to floating-point reduction order.

Several hosts (a TPU pod slice, several GPU nodes) run the same program; call
:func:`initialize_distributed` first. Each host then loads only the rows
:func:`host_batch_slice` gives it, :func:`shard_batch` assembles the global array from those
process-local rows with :func:`jax.make_array_from_process_local_data`, and only the process for
which :func:`is_main_process` is true writes metrics, results and the search ledger.

Example::

    mesh = make_data_mesh()                    # all visible devices
    params, opt_state = replicate((params, opt_state), mesh)
    rows = host_batch_slice(global_batch_size) # this host's rows of every batch
    batch = shard_batch({k: v[rows] for k, v in host_batch.items()}, mesh)
    params, opt_state, loss = train_step(params, opt_state, batch)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "check_batch_size",
    "data_sharding",
    "distributed_environment",
    "gather_to_host",
    "host_batch_slice",
    "initialize_distributed",
    "is_main_process",
    "make_data_mesh",
    "pad_batch",
    "replicate",
    "replicated_sharding",
    "shard_batch",
]

DATA_AXIS = "data"
"""Name of the single mesh axis along which batches are split."""

_CPU_HINT = (
    "On a CPU, simulate more devices by setting "
    "XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX is imported."
)


# ----------------------------------------------------------------------------------------------
# Mesh and shardings
# ----------------------------------------------------------------------------------------------


def make_data_mesh(
    num_devices: int | None = None, *, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over the first ``num_devices`` devices.

    On one host the devices are ``jax.devices()[:num_devices]``. With several processes the mesh
    must hold the same number of devices on every process (each host feeds its own devices), so
    ``num_devices`` must divide by ``jax.process_count()`` and the mesh takes the first
    ``num_devices // process_count`` local devices of every process, ordered by process; process
    ``p`` then owns the rows :func:`host_batch_slice` gives it.

    Args:
      num_devices: how many devices to use; ``None`` uses every visible device.
      devices: the devices to choose from (default ``jax.devices()``).

    Returns:
      A :class:`jax.sharding.Mesh` of shape ``(num_devices,)`` and axis names ``("data",)``.

    Raises:
      ValueError: ``num_devices`` is below 1, above the number of available devices, or (with
        several processes) not a multiple of the process count.
    """
    available = list(jax.devices() if devices is None else devices)
    if num_devices is None:
        num_devices = len(available)
    if num_devices < 1:
        raise ValueError(f"num_devices={num_devices}: a data mesh needs at least one device.")
    if num_devices > len(available):
        raise ValueError(
            f"num_devices={num_devices} but only {len(available)} device(s) are available "
            f"({available[0].platform}); use --devices {len(available)} or fewer. {_CPU_HINT}"
        )
    chosen = _select_devices(available, num_devices)
    return Mesh(np.array(chosen), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def _select_devices(available: Sequence[Any], num_devices: int) -> list[Any]:
    """The first ``num_devices`` devices; with several processes, the same number from each."""
    processes = sorted({d.process_index for d in available})
    if len(processes) == 1:
        return list(available[:num_devices])
    if num_devices % len(processes):
        raise ValueError(
            f"num_devices={num_devices} does not divide over {len(processes)} processes; "
            f"every host must feed the same number of devices, so use a multiple of "
            f"{len(processes)}."
        )
    per_process = num_devices // len(processes)
    chosen = []
    for p in processes:
        local = [d for d in available if d.process_index == p]
        if per_process > len(local):
            raise ValueError(
                f"num_devices={num_devices} needs {per_process} devices on each of "
                f"{len(processes)} processes, but process {p} has {len(local)}."
            )
        chosen.extend(local[:per_process])
    return chosen


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding that splits axis 0 over the ``"data"`` axis (the rest replicated)."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def _mesh_processes(mesh: Mesh) -> list[int]:
    return sorted({d.process_index for d in mesh.devices.flat})


# ----------------------------------------------------------------------------------------------
# Batch sizes and per-host rows
# ----------------------------------------------------------------------------------------------


def _divisors_up_to(n: int, limit: int) -> list[int]:
    return [d for d in range(1, limit + 1) if n % d == 0]


def check_batch_size(global_batch: int, num_devices: int, process_count: int = 1) -> int:
    """Checks that a global batch splits evenly over devices and hosts.

    Args:
      global_batch: examples per step over all devices.
      num_devices: devices in the data mesh.
      process_count: hosts feeding the mesh.

    Returns:
      The per-device batch size ``global_batch // num_devices``.

    Raises:
      ValueError: naming the batch size, the device (or host) count and the fix.
    """
    if global_batch < 1:
        raise ValueError(f"batch size {global_batch}: it must be a positive number of examples.")
    if num_devices < 1 or process_count < 1:
        raise ValueError(
            f"num_devices={num_devices}, process_count={process_count}: both must be >= 1."
        )
    if global_batch % num_devices:
        lower = global_batch - global_batch % num_devices
        options = f"{lower} or {lower + num_devices}" if lower else f"{num_devices}"
        fits = _divisors_up_to(global_batch, num_devices)[-1]
        raise ValueError(
            f"batch size {global_batch} does not divide evenly over the {num_devices} devices of "
            f"the data mesh ({global_batch} % {num_devices} = {global_batch % num_devices}). "
            f"Use a batch size that is a multiple of {num_devices} (e.g. {options}), or fewer "
            f"devices with `lrdist-jax train --devices N` where N divides {global_batch} "
            f"(e.g. --devices {fits})."
        )
    if global_batch % process_count:
        raise ValueError(
            f"batch size {global_batch} does not split evenly over {process_count} hosts "
            f"(processes); every host loads the same number of rows, so use a multiple of "
            f"{process_count}."
        )
    return global_batch // num_devices


def host_batch_slice(
    global_batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> slice:
    """The rows of every global batch that one host loads.

    Hosts take contiguous, equal blocks in process order, which is the layout
    :func:`shard_batch` assumes for the mesh of :func:`make_data_mesh`: host ``p`` of ``P`` loads
    rows ``[p * B / P, (p + 1) * B / P)``. The blocks of all hosts partition ``[0, B)``.

    Args:
      global_batch_size: ``B``, examples per step over all hosts.
      process_index: this host (default ``jax.process_index()``).
      process_count: number of hosts (default ``jax.process_count()``).

    Returns:
      A ``slice`` to index the global batch (or the list of its example ids) with.

    Raises:
      ValueError: ``B`` does not divide by the host count, or the index is out of range.
    """
    if process_index is None:
        process_index = jax.process_index()
    if process_count is None:
        process_count = jax.process_count()
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} is outside [0, {process_count}).")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"batch size {global_batch_size} does not split evenly over {process_count} hosts "
            f"(processes); use a positive multiple of {process_count}."
        )
    per_host = global_batch_size // process_count
    return slice(process_index * per_host, (process_index + 1) * per_host)


def _leading_dim(batch: Any) -> int:
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("the batch is empty: it has no arrays to shard.")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in sizes:
        raise ValueError("every batch array needs a leading batch axis; got a scalar.")
    if len(sizes) != 1:
        shapes = jax.tree.map(np.shape, batch)
        raise ValueError(f"batch arrays disagree on the batch size (axis 0): {shapes}.")
    return sizes.pop()


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Host batch -> global arrays split along axis 0 over the ``"data"`` axis.

    On one host ``batch`` is the whole global batch. On several hosts it holds this host's rows
    only (:func:`host_batch_slice`) and the global array of ``B = rows * hosts`` examples is built
    with :func:`jax.make_array_from_process_local_data`; no host ever holds the global batch.

    Args:
      batch: a pytree (usually a dict) of numpy arrays with the same leading size, e.g.
        ``{"input_ids": i32[b, T], "attention_mask": i32[b, T], "labels": i32[b]}``.
      mesh: the data mesh from :func:`make_data_mesh`.

    Returns:
      The same pytree of :class:`jax.Array` with global shape ``[B, ...]``; each device holds
      ``B / num_devices`` rows.

    Raises:
      ValueError: the batch size does not divide by the device count (see
        :func:`check_batch_size`) or the arrays disagree on it.
    """
    local_rows = _leading_dim(batch)
    hosts = len(_mesh_processes(mesh))
    global_rows = local_rows * hosts
    check_batch_size(global_rows, mesh.size, hosts)
    sharding = data_sharding(mesh)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x, (global_rows, *x.shape[1:]))

    return jax.tree.map(put, batch)


def pad_batch(batch: Any, multiple: int) -> tuple[Any, np.ndarray]:
    """Pads a host batch with copies of its last row up to a multiple of ``multiple``.

    Evaluation batches (the last one of a split) need not divide by the device count; pad them,
    shard them, and weight the per-example results by the returned mask.

    Args:
      batch: a pytree of numpy arrays with leading size ``b``.
      multiple: e.g. the number of devices (or devices per host, for a host-local batch).

    Returns:
      ``(padded, valid)``: the batch with leading size ``ceil(b / multiple) * multiple`` and
      ``valid: bool[B]``, true on the ``b`` real rows.
    """
    if multiple < 1:
        raise ValueError(f"multiple={multiple}: it must be >= 1.")
    rows = _leading_dim(batch)
    if rows == 0:
        raise ValueError("cannot pad an empty batch (0 rows).")
    extra = -rows % multiple
    valid = np.arange(rows + extra) < rows

    def pad(x):
        x = np.asarray(x)
        if not extra:
            return x
        return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)], axis=0)

    return jax.tree.map(pad, batch), valid


# ----------------------------------------------------------------------------------------------
# Replication and fetching
# ----------------------------------------------------------------------------------------------


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Puts a full copy of every leaf (parameters, optimizer state) on every device of ``mesh``.

    The result never shares buffers with ``tree``, so it can be donated to a jitted step while
    ``tree`` is still in use (e.g. as the pre-trained anchor of EWC). :func:`jax.device_put`
    alone does not promise that: on a mesh holding the input's device it reuses the input's
    buffer for that device's copy, even with ``may_alias=False``. With several processes every
    host must pass the same values (same seed or the same restored checkpoint). Typed PRNG keys
    are supported.
    """
    sharding = replicated_sharding(mesh)
    if len(_mesh_processes(mesh)) == 1:
        placed = jax.device_put(tree, sharding)  # may share buffers with ``tree``
        return jax.jit(_copy_tree, out_shardings=sharding)(placed)

    def put(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(x)
            return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=impl)
        host = np.asarray(x)  # fresh buffers by construction
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(put, tree)


def _copy_tree(tree: Any) -> Any:
    def copy(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(x)
            return jax.random.wrap_key_data(jnp.copy(jax.random.key_data(x)), impl=impl)
        return jnp.copy(x)

    return jax.tree.map(copy, tree)


def gather_to_host(tree: Any) -> Any:
    """Global arrays -> numpy on this host (for metrics and predictions).

    Replicated arrays are read from a local copy; arrays sharded over several hosts are gathered
    with :func:`jax.experimental.multihost_utils.process_allgather` (every host must call this).
    """
    from jax.experimental import multihost_utils

    def get(x):
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(get, tree)


# ----------------------------------------------------------------------------------------------
# Multi-host start-up
# ----------------------------------------------------------------------------------------------

_ENV_FLAG = "LRDIST_DISTRIBUTED"


def _int_env(env: Mapping[str, str], key: str) -> int | None:
    value = env.get(key, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{key}={value!r} is not an integer.") from None


def distributed_environment(env: Mapping[str, str] | None = None) -> str | None:
    """Why this process looks like one of several hosts, or ``None`` on a single host.

    Signals, in order: ``LRDIST_DISTRIBUTED=1`` (set by ``tpu_scripts/run_tpu_vm.sh``),
    ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES > 1``, more than one host in
    ``TPU_WORKER_HOSTNAMES`` / ``TPU_PROCESS_ADDRESSES`` (TPU pods, GKE), ``SLURM_NTASKS > 1``,
    ``OMPI_COMM_WORLD_SIZE > 1``.

    Args:
      env: the environment to inspect (default ``os.environ``).

    Returns:
      A short reason such as ``"TPU_WORKER_HOSTNAMES lists 4 hosts"``, or ``None``.
    """
    env = os.environ if env is None else env
    if env.get(_ENV_FLAG, "").strip().lower() in ("1", "true", "yes"):
        return f"{_ENV_FLAG}={env[_ENV_FLAG]}"
    if env.get("JAX_COORDINATOR_ADDRESS", "").strip():
        return "JAX_COORDINATOR_ADDRESS is set"
    for key in ("JAX_NUM_PROCESSES", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        n = _int_env(env, key)
        if n is not None and n > 1:
            return f"{key}={n}"
    for key in ("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES"):
        hosts = [h for h in env.get(key, "").split(",") if h.strip()]
        if len(hosts) > 1:
            return f"{key} lists {len(hosts)} hosts"
    return None


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Calls :func:`jax.distributed.initialize` when this is a multi-host run; else does nothing.

    Call it first, before any other JAX call. A multi-host run is recognised from explicit
    arguments (a coordinator address or ``num_processes > 1``) or from the environment
    (:func:`distributed_environment`); ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` fill unset
    arguments, and JAX auto-detects the rest (TPU VM metadata, SLURM, Open MPI). Calling it again
    once initialised is harmless.

    Args:
      coordinator_address: ``host:port`` of process 0.
      num_processes: number of processes (hosts).
      process_id: this process, in ``[0, num_processes)``.
      env: the environment to inspect (default ``os.environ``).

    Returns:
      ``True`` if JAX's distributed runtime is (now) initialised, ``False`` on a single host.
    """
    if jax.distributed.is_initialized():
        return True
    env = os.environ if env is None else env
    explicit = coordinator_address is not None or (num_processes or 1) > 1
    if not explicit and distributed_environment(env) is None:
        return False
    if num_processes is None:
        num_processes = _int_env(env, "JAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _int_env(env, "JAX_PROCESS_ID")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    return True


def is_main_process() -> bool:
    """True on process 0, the only process that writes metrics, results and the search ledger.

    Orbax checkpoints are the exception: every process calls save and restore together.
    """
    return jax.process_index() == 0
