"""A small reader of the IDX files MNIST is distributed in (plain or gzipped), for benchmarks.

The product never needs MNIST; ``benchmarks/bench_train.py`` reads the real files from
``../shared/data/mnist/``. IDX: a big-endian header (two zero bytes, a type code, the number of
dimensions), one big-endian int32 per dimension, then the values in C order.

>>> import gzip, io, tempfile, pathlib, struct
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> with gzip.open(folder / "t10k-images.idx3-ubyte.gz", "wb") as f:
...     _ = f.write(struct.pack(">HBBiii", 0, 0x08, 3, 2, 2, 2) + bytes(range(8)))
>>> with gzip.open(folder / "t10k-labels.idx1-ubyte.gz", "wb") as f:
...     _ = f.write(struct.pack(">HBBi", 0, 0x08, 1, 2) + bytes([7, 3]))
>>> images, labels = load_mnist(folder, split="test")
>>> images.shape, images.dtype.name, labels.tolist()
((2, 2, 2), 'uint8', [7, 3])
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa

from privprep.schemas.errors import InputError

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FILES = {"train": ("train-images", "train-labels"), "test": ("t10k-images", "t10k-labels")}


def read_idx(path: Path | str) -> np.ndarray:
    """The array stored in one IDX file (``.gz`` is decompressed)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"cannot read IDX file '{path}' ({type(exc).__name__})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise InputError(f"'{path}' is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">i4")) if ndim else ()
    dtype = np.dtype(_TYPES[raw[2]])
    count = int(np.prod(dims)) if dims else 1
    if len(raw) - header != count * dtype.itemsize:
        raise InputError(f"IDX file '{path}' holds {len(raw) - header} data bytes, its header promises {count * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.idx{1 if 'labels' in stem else 3}-ubyte", f"{stem}-idx{1 if 'labels' in stem else 3}-ubyte"):
        for suffix in (".gz", ""):
            candidate = folder / (name + suffix)
            if candidate.exists():
                return candidate
    raise InputError(f"no MNIST file '{stem}' (IDX, optionally .gz) in '{folder}'")


def load_mnist(folder: Path | str, *, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 28, 28), labels int64 (n,)) of the ``train`` or ``test`` split in ``folder``."""
    if split not in _FILES:
        raise ValueError("split must be 'train' or 'test'")
    folder = Path(folder)
    images_stem, labels_stem = _FILES[split]
    images, labels = read_idx(_find(folder, images_stem)), read_idx(_find(folder, labels_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise InputError(f"MNIST {split} files in '{folder}' do not match: images {images.shape}, labels {labels.shape}")
    return images, labels.astype(np.int64)


def mnist_table(images: np.ndarray, labels: np.ndarray) -> pa.Table:
    """An Arrow table with an ``image`` column (``fixed_size_list<uint8, H·W>``) and an int64 ``label``."""
    flat = np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.uint8)
    image = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    return pa.table({"image": image, "label": pa.array(labels, pa.int64())})


__all__ = ["load_mnist", "mnist_table", "read_idx"]
