"""Read a PyTorch state dict (`.pth`) into numpy arrays, without torch and without trusting its pickle.

A `.pth` file is a pickle, and unpickling runs whatever callables the file names. The reader
here resolves only the names a state dict of tensors needs (`_ALLOWED`); any other global,
such as `os.system` or `builtins.eval`, stops the load with a ModelError before it is called.

    legacy format (torch < 1.6, and `_use_new_zipfile_serialization=False`):
        pickle(magic) pickle(1001) pickle(sys_info) pickle(state dict) pickle([storage keys])
        then per key: int64 element count, raw little-endian bytes
    zip format (torch >= 1.6):
        <name>/data.pkl (the state dict), <name>/data/<key> (raw bytes), <name>/byteorder

Tensors in the pickle point at storages by key (`persistent_load`); they are placeholders until
the bytes are read, then become numpy arrays with the tensor's size, stride and offset.
`read_state_dict(path, reader="torch")` uses torch.load with weights_only=True instead, where torch is installed.
"""

from __future__ import annotations

import collections
import io
import pickle  # safe-load: only _SafeUnpickler, whose find_class allows tensor types alone, loads
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# Storage classes as torch pickles them (module torch, name <Type>Storage) and their element types.
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: str
    # A legacy view into another storage: (root key, element offset, element count), else None.
    view: tuple[str, int, int] | None = None


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
) -> _Tensor:
    return _Tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None) -> _Tensor:
    return data


class _StorageType:
    """Stands in for `torch.FloatStorage` & co.: only its name is used, never called."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise ModelError(f"unsafe pickle: a storage type was called; received torch.{self.name}(...)")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED` globals; persistent ids become `_Storage` placeholders."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ModelError(
                f"refusing to load {self.source}: only tensors, storages and OrderedDict may be "
                f"unpickled; received global {module}.{name}"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise ModelError(f"refusing to load {self.source}: unexpected persistent id; received {pid!r:.80}")
        view = pid[5] if len(pid) > 5 else None
        view = (str(view[0]), int(view[1]), int(view[2])) if view else None
        return _Storage(str(pid[2]), STORAGE_DTYPES[pid[1].name], view)


def _unpickle(file, source: str):
    return _SafeUnpickler(file, source).load()


def _as_array(raw: bytes, dtype: str, big_endian: bool) -> np.ndarray:
    if dtype == "bf16":  # numpy has no bfloat16: it is the top half of a float32
        halves = np.frombuffer(raw, dtype=">u2" if big_endian else "<u2").astype(np.uint32)
        return (halves << 16).view(np.float32)
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder(">" if big_endian else "<")).astype(dtype)


def _materialize(tensor: _Tensor, storages: dict[str, np.ndarray]) -> np.ndarray:
    storage = tensor.storage
    flat = (
        storages[storage.view[0]][storage.view[1] : storage.view[1] + storage.view[2]]
        if storage.view
        else storages[storage.key]
    )
    if not tensor.size:
        return np.array(flat[tensor.offset])
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride)) if all(tensor.size) else 0
    if min(tensor.size) > 0 and (tensor.offset < 0 or last >= flat.size or min(tensor.stride) < 0):
        raise ModelError(
            f"tensor reaches outside its storage ({flat.size} elements); received size "
            f"{tensor.size}, stride {tensor.stride}, offset {tensor.offset}"
        )
    view = np.lib.stride_tricks.as_strided(
        flat[tensor.offset :], shape=tensor.size, strides=[s * flat.itemsize for s in tensor.stride], writeable=False
    )
    return np.ascontiguousarray(view)


def _collect(obj, source: str, storages: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise ModelError(f"{source} is not a state dict; received a pickled {type(obj).__name__}")
    out = {}
    for name, value in obj.items():
        if not isinstance(value, _Tensor):
            raise ModelError(f"{source} is not a state dict of tensors; received {type(value).__name__} at '{name}'")
        out[str(name)] = _materialize(value, storages)
    return out


def _storages_of(obj) -> list[_Storage]:
    return [v.storage for v in obj.values() if isinstance(v, _Tensor)] if isinstance(obj, dict) else []


def _read_legacy(path: Path) -> dict[str, np.ndarray]:
    source = str(path)
    with open(path, "rb") as f:
        magic = _unpickle(f, source)
        if magic != LEGACY_MAGIC:
            raise ModelError(f"{source} is neither a zip nor a legacy torch file; received first pickle {magic!r:.40}")
        protocol = _unpickle(f, source)
        if protocol != LEGACY_PROTOCOL:
            raise ModelError(f"{source}: unsupported legacy torch protocol; received {protocol!r:.40}")
        info = _unpickle(f, source)
        big_endian = not (info.get("little_endian", True) if isinstance(info, dict) else True)
        obj = _unpickle(f, source)
        keys = _unpickle(f, source)
        dtypes = {s.view[0] if s.view else s.key: s.dtype for s in _storages_of(obj)}
        storages = {}
        for key in keys:
            (count,) = struct.unpack(">q" if big_endian else "<q", f.read(8))
            dtype = dtypes.get(str(key), "u1")
            itemsize = 2 if dtype == "bf16" else np.dtype(dtype).itemsize
            raw = f.read(count * itemsize)
            if len(raw) != count * itemsize:
                raise ModelError(
                    f"{source} is truncated: storage {key} needs {count * itemsize} bytes; received {len(raw)}"
                )
            storages[str(key)] = _as_array(raw, dtype, big_endian)
    return _collect(obj, source, storages)


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    source = str(path)
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ModelError(f"{source} is not a torch zip checkpoint; received {len(pickles)} data.pkl members")
        prefix = pickles[0][: -len("data.pkl")]
        order = f"{prefix}byteorder"
        big_endian = order in archive.namelist() and archive.read(order).strip() == b"big"
        obj = _unpickle(io.BytesIO(archive.read(pickles[0])), source)
        storages = {}
        for storage in _storages_of(obj):
            key = storage.view[0] if storage.view else storage.key
            if key not in storages:
                storages[key] = _as_array(archive.read(f"{prefix}data/{key}"), storage.dtype, big_endian)
    return _collect(obj, source, storages)


def _read_numpy(path: Path) -> dict[str, np.ndarray]:
    return _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ModelError("reader 'torch' needs PyTorch (pip install torch); received no torch module") from None
    state = torch.load(path, map_location="cpu", weights_only=True)  # safe-load: weights_only
    return {name: value.detach().cpu().numpy() for name, value in state.items()}


READERS: dict[str, Callable[[Path], dict[str, np.ndarray]]] = {"numpy": _read_numpy, "torch": _read_torch}


def read_state_dict(path: str | Path, reader: str = "numpy") -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict file, by name, as numpy arrays (never an unrestricted load)."""
    path = Path(path)
    if reader not in READERS:
        raise ModelError(f"unknown state-dict reader; choose one of {', '.join(READERS)}; received '{reader}'")
    if not path.is_file():
        raise ModelError(f"state dict file not found; received {path}")
    try:
        return READERS[reader](path)
    except (pickle.UnpicklingError, EOFError, struct.error, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelError(
            f"cannot read {path} as a torch state dict: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from None
