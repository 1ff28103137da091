"""MNIST in the IDX format: a strict reader, a writer, and a loader.

IDX layout (big-endian): magic ``00 00 <dtype> <ndim>``, then ``ndim`` uint32
dimensions, then exactly ``prod(dims)`` bytes of payload. Only what MNIST uses
is supported: dtype 0x08 (ubyte), ndim 3 (images) or 1 (labels).
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ScratchGradError

__all__ = [
    "DataError",
    "MNISTSplits",
    "read_idx",
    "write_idx",
    "load_mnist",
    "embedded_mnist_dir",
    "EMBEDDED_MD5",
    "MNIST_FILES",
]


class DataError(ScratchGradError, ValueError):
    """A data file is missing, truncated, corrupted or not what it claims to be."""


_GZIP_MAGIC = b"\x1f\x8b"
_IDX_MAGICS = {0x00000803: "images (ubyte, 3-d)", 0x00000801: "labels (ubyte, 1-d)"}

# The four standard file names, in MNISTSplits order; each may also end in ".gz".
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# The embedded copy of the official t10k files (md5 of the .gz files as published).
EMBEDDED_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
EMBEDDED_N_TRAIN = 8000  # first 8000 of t10k -> train, last 2000 -> test


def embedded_mnist_dir() -> Path:
    """Directory holding the embedded t10k files (this package's directory)."""
    return Path(__file__).resolve().parent


def _parse_idx(raw: bytes, name: str) -> np.ndarray:
    """Parse IDX bytes (gzip or raw, detected by magic bytes); `name` is used in errors."""
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{name}: expected a complete gzip stream, found a broken one ({e})") from e
    if len(raw) < 4:
        raise DataError(f"{name}: expected a 4-byte IDX magic number, found only {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _IDX_MAGICS:
        expected = " or ".join(f"0x{m:08x} ({what})" for m, what in _IDX_MAGICS.items())
        raise DataError(f"{name}: expected IDX magic {expected}, found 0x{magic:08x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: expected a {header}-byte IDX header, found only {len(raw)} bytes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if any(d == 0 for d in dims[1:]):
        raise DataError(f"{name}: expected positive item dimensions, found shape {dims}")
    expected_size = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected_size:
        raise DataError(
            f"{name}: expected {expected_size} bytes (header {header} + payload for shape {dims}), "
            f"found {len(raw)} bytes ({'truncated' if len(raw) < expected_size else 'trailing data'})"
        )
    # Zero-copy view of the payload; read-only because `raw` is immutable bytes.
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path) -> np.ndarray:
    """Read an MNIST IDX file (gzip or raw) into a read-only uint8 array.

    Raises DataError naming the file if it is truncated, malformed or not ubyte IDX
    with 1 or 3 dimensions. `.copy()` the result to modify it.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read IDX file ({e})") from e
    return _parse_idx(raw, str(path))


def write_idx(path, array) -> Path:
    """Write a uint8-valued array with 1 or 3 dims as IDX; gzip it if `path` ends in .gz."""
    path = Path(path)
    a = np.asarray(array)
    if a.ndim not in (1, 3):
        raise ValueError(f"write_idx: expected a 1-d (labels) or 3-d (images) array, got shape {a.shape}")
    if a.dtype != np.uint8:
        if a.dtype.kind not in "iub" or (a.size and (a.min() < 0 or a.max() > 255)):
            raise ValueError(f"write_idx: expected integer values in [0, 255], got dtype {a.dtype}")
        a = a.astype(np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape)
    data = header + np.ascontiguousarray(a).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)  # mtime=0: byte-identical output on every run
    path.write_bytes(data)
    return path


@dataclass(frozen=True)
class MNISTSplits:
    """Images as (N, 784) floats in [0, 1]; labels as (N,) int64 in 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def __repr__(self) -> str:
        return (
            f"MNISTSplits(x_train={self.x_train.shape} {self.x_train.dtype}, "
            f"x_test={self.x_test.shape} {self.x_test.dtype}, source={self.source!r})"
        )


def _to_xy(images: np.ndarray, labels: np.ndarray, names: tuple[str, str], dtype) -> tuple[np.ndarray, np.ndarray]:
    """Check an images/labels pair and convert it to (N, 784) floats and int64 labels."""
    img_name, lbl_name = names
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{img_name}: expected images of shape (N, 28, 28), found {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{lbl_name}: expected labels of shape (N,), found {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{img_name} has {len(images)} images but {lbl_name} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{lbl_name}: expected labels in 0..9, found {int(labels.max())}")
    x = images.reshape(len(images), 784).astype(dtype)
    x /= 255
    return x, labels.astype(np.int64)


def _find_files(directory: Path) -> list[Path]:
    """Resolve the four standard files in `directory` (raw preferred over .gz)."""
    if not directory.is_dir():
        raise DataError(f"MNIST directory {directory} does not exist or is not a directory")
    found, missing = [], []
    for stem in MNIST_FILES:
        candidates = [directory / stem, directory / f"{stem}.gz"]
        hit = next((p for p in candidates if p.is_file()), None)
        if hit is None:
            missing.append(f"{stem}[.gz]")
        found.append(hit)
    if missing:
        raise DataError(
            f"MNIST directory {directory} is missing {len(missing)} of 4 files: {', '.join(missing)}"
        )
    return found


def load_mnist(data_dir=None, dtype=np.float64) -> MNISTSplits:
    """Load MNIST as flattened (N, 784) images scaled to [0, 1] and int64 labels.

    data_dir: a directory with the four standard IDX files (each raw or .gz).
    None: the embedded official t10k files, md5-verified, split deterministically
    into the first 8000 (train) and last 2000 (test) examples.
    """
    if np.dtype(dtype).kind != "f":
        raise ValueError(f"load_mnist: dtype must be a floating type, got {np.dtype(dtype)}")

    if data_dir is not None:
        directory = Path(data_dir).resolve()
        paths = _find_files(directory)
        arrays = [read_idx(p) for p in paths]
        names = [str(p) for p in paths]
        x_train, y_train = _to_xy(arrays[0], arrays[1], (names[0], names[1]), dtype)
        x_test, y_test = _to_xy(arrays[2], arrays[3], (names[2], names[3]), dtype)
        return MNISTSplits(x_train, y_train, x_test, y_test, source=str(directory))

    parsed = []
    for fname, md5 in EMBEDDED_MD5.items():
        path = embedded_mnist_dir() / fname
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise DataError(f"embedded MNIST file {path} cannot be read ({e})") from e
        found = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        if found != md5:
            raise DataError(f"{path}: corrupted copy, expected md5 {md5}, found {found}")
        parsed.append(_parse_idx(raw, str(path)))
    images, labels = parsed
    x, y = _to_xy(images, labels, tuple(EMBEDDED_MD5), dtype)
    n = EMBEDDED_N_TRAIN
    return MNISTSplits(
        x[:n], y[:n], x[n:], y[n:],
        source=f"embedded MNIST t10k split {n}/{len(x) - n}",
    )
