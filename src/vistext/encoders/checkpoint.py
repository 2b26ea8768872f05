"""Read a PyTorch checkpoint (a ``state_dict`` saved by ``torch.save``) into NumPy arrays, without torch.

Both of torch's formats are read: the zip archive (torch >= 1.6: ``data.pkl`` plus one file per storage) and
the legacy stream (a few pickles, then each storage's bytes in order), which is what the bundled
EfficientNet-Lite0 weights use. The pickles are read by a restricted unpickler that only builds ordered dicts,
tensors and storages: a checkpoint can never run code, as with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from vistext.errors import ModelError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass
class _Storage:
    key: str
    dtype: type
    data: np.ndarray | None = None


@dataclass
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ModelError(f"checkpoint storage {self.storage.key} has no data")
        if not self.shape:
            return data[self.offset : self.offset + 1].reshape(()).copy()
        itemsize = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], shape=self.shape, strides=[s * itemsize for s in self.stride]
        )
        return np.array(view)


def _rebuild_tensor(storage: _Storage, offset: int, shape: tuple, stride: tuple, *_: Any) -> _Tensor:
    return _Tensor(storage, int(offset), tuple(shape), tuple(stride))


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


class _Unpickler(pickle.Unpickler):
    """Builds only what a state dict holds; any other class in the pickle is refused."""

    def __init__(self, file: IO[bytes], storage: Callable[[tuple], _Storage]) -> None:
        super().__init__(file)
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in DTYPES:
            return _StorageType(name)
        raise ModelError(f"checkpoint holds {module}.{name}, which a weights file never needs")

    def persistent_load(self, saved_id: Any) -> _Storage:
        return self._storage(tuple(saved_id))


def _legacy(file: IO[bytes]) -> dict[str, _Tensor]:
    storages: dict[str, _Storage] = {}

    def storage(saved_id: tuple) -> _Storage:
        _, kind, key, _location, _numel, *_view = saved_id
        if key not in storages:
            storages[key] = _Storage(str(key), DTYPES[kind.name])
        return storages[key]

    if _Unpickler(file, storage).load() != LEGACY_MAGIC:
        raise ModelError("not a PyTorch checkpoint (bad magic number)")
    for _ in range(2):  # protocol version, system info: plain values
        _Unpickler(file, storage).load()
    state = _Unpickler(file, storage).load()
    keys = _Unpickler(file, storage).load()
    for key in keys:
        item = storages[key]
        count = int(np.frombuffer(file.read(8), "<i8")[0])
        item.data = np.frombuffer(file.read(count * np.dtype(item.dtype).itemsize), item.dtype)
    return state


def _archive(path: Path) -> dict[str, _Tensor]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        prefix = names[0].split("/")[0]
        storages: dict[str, _Storage] = {}

        def storage(saved_id: tuple) -> _Storage:
            _, kind, key, _location, _numel = saved_id
            if key not in storages:
                raw = archive.read(f"{prefix}/data/{key}")
                storages[key] = _Storage(str(key), DTYPES[kind.name], np.frombuffer(raw, DTYPES[kind.name]))
            return storages[key]

        with archive.open(f"{prefix}/data.pkl") as file:
            return _Unpickler(file, storage).load()


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of the ``state_dict`` saved at ``path``, as NumPy arrays (a ModelError if it is not one)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            state = _archive(path)
        else:
            with path.open("rb") as file:
                state = _legacy(file)
    except ModelError as error:
        raise ModelError(f"{path}: {error}") from None
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError, IndexError, TypeError) as error:
        raise ModelError(f"{path}: unreadable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or not all(isinstance(v, _Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict of tensors")
    return {str(name): tensor.array() for name, tensor in state.items()}
