"""Tests for scratch_grad.data: IDX reader/writer, MNIST loader, toy sets."""

import gzip
import hashlib
import shutil

import numpy as np
import pytest

from scratch_grad.data import (
    DataError,
    MNIST_FILES,
    embedded_mnist_dir,
    linear_regression,
    load_mnist,
    random_classification,
    read_idx,
    write_idx,
)
from scratch_grad.data import mnist as mnist_mod

# Published md5 sums of the official MNIST t10k .gz files.
OFFICIAL_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


@pytest.fixture(scope="module")
def embedded():
    return load_mnist()


# ---------------------------------------------------------------- embedded split


def test_data_error_hierarchy():
    from scratch_grad.errors import ScratchGradError

    assert issubclass(DataError, ScratchGradError) and issubclass(DataError, ValueError)


def test_embedded_files_match_official_md5():
    for name, md5 in OFFICIAL_MD5.items():
        data = (embedded_mnist_dir() / name).read_bytes()
        assert hashlib.md5(data).hexdigest() == md5
        assert mnist_mod.EMBEDDED_MD5[name] == md5


def test_corrupted_embedded_copy_is_rejected(tmp_path, monkeypatch):
    for name in OFFICIAL_MD5:
        shutil.copy(embedded_mnist_dir() / name, tmp_path / name)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(labels.read_bytes())
    data[100] ^= 0xFF
    labels.write_bytes(bytes(data))
    monkeypatch.setattr(mnist_mod, "embedded_mnist_dir", lambda: tmp_path)
    with pytest.raises(DataError, match="corrupted copy") as exc:
        load_mnist()
    assert "t10k-labels-idx1-ubyte.gz" in str(exc.value)


def test_embedded_split_shapes_dtypes_ranges(embedded):
    s = embedded
    assert s.source == "embedded MNIST t10k split 8000/2000"
    assert s.x_train.shape == (8000, 784) and s.x_test.shape == (2000, 784)
    assert s.y_train.shape == (8000,) and s.y_test.shape == (2000,)
    assert s.x_train.dtype == np.float64 and s.x_test.dtype == np.float64
    assert s.y_train.dtype == np.int64 and s.y_test.dtype == np.int64
    for x in (s.x_train, s.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    for y in (s.y_train, s.y_test):
        assert set(np.unique(y)) == set(range(10))  # labels 0..9, every class present


def test_embedded_split_is_first_8000_then_last_2000(embedded):
    images = read_idx(embedded_mnist_dir() / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(embedded_mnist_dir() / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    flat = images.reshape(10000, 784)
    np.testing.assert_array_equal(embedded.x_train * 255, flat[:8000])
    np.testing.assert_array_equal(embedded.x_test * 255, flat[8000:])
    np.testing.assert_array_equal(embedded.y_train, labels[:8000])
    np.testing.assert_array_equal(embedded.y_test, labels[8000:])
    # The well-known first ten t10k labels.
    np.testing.assert_array_equal(embedded.y_train[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])


def test_embedded_split_is_deterministic(embedded):
    again = load_mnist()
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, field), getattr(embedded, field))


def test_float32_dtype(embedded):
    s = load_mnist(dtype=np.float32)
    assert s.x_train.dtype == np.float32 and s.x_test.dtype == np.float32
    np.testing.assert_allclose(s.x_train, embedded.x_train, rtol=1e-7)
    with pytest.raises(ValueError, match="floating"):
        load_mnist(dtype=np.int32)


# ---------------------------------------------------------------- IDX reader/writer


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_roundtrip(tmp_path, name):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    read = read_idx(write_idx(tmp_path / name, a))
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, a)


def test_gzip_detected_by_magic_not_extension(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "x.gz", a)
    (tmp_path / "x.gz").rename(tmp_path / "gzipped-but-no-ext")
    np.testing.assert_array_equal(read_idx(tmp_path / "gzipped-but-no-ext"), a)
    write_idx(tmp_path / "raw", a)
    (tmp_path / "raw").rename(tmp_path / "raw-but-named.gz")
    np.testing.assert_array_equal(read_idx(tmp_path / "raw-but-named.gz"), a)


def test_truncated_gzip_raises(tmp_path):
    path = write_idx(tmp_path / "imgs-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError) as exc:
        read_idx(path)
    assert "imgs-idx3-ubyte.gz" in str(exc.value)


@pytest.mark.parametrize("cut", [1, 783, 3136])
def test_truncated_payload_raises(tmp_path, cut):
    path = tmp_path / "short-idx3-ubyte.gz"
    good = gzip.decompress(write_idx(path, np.zeros((4, 28, 28), np.uint8)).read_bytes())
    path.write_bytes(gzip.compress(good[:-cut]))  # a valid gzip stream of a truncated file
    with pytest.raises(DataError, match="truncated") as exc:
        read_idx(path)
    assert "short-idx3-ubyte.gz" in str(exc.value)
    assert "3152 bytes" in str(exc.value)  # expected size: 16-byte header + 4*28*28


def test_trailing_data_raises(tmp_path):
    path = write_idx(tmp_path / "long-idx1-ubyte", np.arange(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataError, match="trailing data"):
        read_idx(path)


def test_truncated_header_raises(tmp_path):
    path = tmp_path / "hdr-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1]))
    with pytest.raises(DataError, match="header") as exc:
        read_idx(path)
    assert "hdr-idx3-ubyte" in str(exc.value)


@pytest.mark.parametrize("magic", [b"\x00\x00\x08\x02", b"\x00\x00\x0d\x03", b"\x08\x03\x00\x00", b"PK\x03\x04"])
def test_wrong_magic_raises(tmp_path, magic):
    path = tmp_path / "bad-magic-idx3-ubyte"
    good = write_idx(path, np.zeros((2, 28, 28), np.uint8)).read_bytes()
    path.write_bytes(magic + good[4:])
    with pytest.raises(DataError) as exc:
        read_idx(path)
    msg = str(exc.value)
    assert "bad-magic-idx3-ubyte" in msg
    assert "0x00000803" in msg and f"0x{magic.hex()}" in msg  # expected and found


def test_empty_and_missing_file_raise(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(DataError, match="found only 0 bytes"):
        read_idx(tmp_path / "empty")
    with pytest.raises(DataError, match="nope"):
        read_idx(tmp_path / "nope")


def test_write_idx_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        write_idx(tmp_path / "x", np.array([0, 256]))
    with pytest.raises(ValueError):
        write_idx(tmp_path / "x", np.array([0.5]))
    with pytest.raises(ValueError):
        write_idx(tmp_path / "x", np.zeros((2, 2), np.uint8))
    write_idx(tmp_path / "ok", np.array([0, 9, 255]))  # in-range ints are fine
    np.testing.assert_array_equal(read_idx(tmp_path / "ok"), [0, 9, 255])


# ---------------------------------------------------------------- directory loading


def _write_fake_mnist(directory, suffixes, n_train=30, n_test=20, seed=2):
    rng = np.random.default_rng(seed)
    arrays = [
        rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_train, dtype=np.uint8),
        rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_test, dtype=np.uint8),
    ]
    for stem, suffix, a in zip(MNIST_FILES, suffixes, arrays):
        write_idx(directory / (stem + suffix), a)
    return arrays


@pytest.mark.parametrize(
    "suffixes", [("",) * 4, (".gz",) * 4, ("", ".gz", ".gz", "")], ids=["raw", "gz", "mixed"]
)
def test_load_directory(tmp_path, suffixes):
    imgs_tr, lbl_tr, imgs_te, lbl_te = _write_fake_mnist(tmp_path, suffixes)
    s = load_mnist(tmp_path)
    assert s.source == str(tmp_path.resolve())
    assert s.x_train.shape == (30, 784) and s.x_test.shape == (20, 784)
    assert s.x_train.dtype == np.float64 and s.y_train.dtype == np.int64
    np.testing.assert_array_equal(s.x_train, imgs_tr.reshape(30, 784) / 255.0)
    np.testing.assert_array_equal(s.x_test, imgs_te.reshape(20, 784) / 255.0)
    np.testing.assert_array_equal(s.y_train, lbl_tr)
    np.testing.assert_array_equal(s.y_test, lbl_te)


def test_directory_missing_files_named(tmp_path):
    _write_fake_mnist(tmp_path, (".gz",) * 4)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path)
    msg = str(exc.value)
    assert "train-labels-idx1-ubyte" in msg and str(tmp_path.resolve()) in msg
    assert "train-images" not in msg and "t10k" not in msg  # only the missing one is listed

    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing 2 of 4") as exc:
        load_mnist(tmp_path)
    assert "t10k-images-idx3-ubyte" in str(exc.value)


def test_directory_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_mnist(tmp_path / "does-not-exist")


def test_directory_count_mismatch(tmp_path):
    _write_fake_mnist(tmp_path, ("",) * 4)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="20 images but .* 19 labels"):
        load_mnist(tmp_path)


def test_directory_swapped_files_and_bad_labels(tmp_path):
    _write_fake_mnist(tmp_path, ("",) * 4)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(30, np.uint8))  # labels file as images
    with pytest.raises(DataError, match="train-images-idx3-ubyte: expected images of shape"):
        load_mnist(tmp_path)
    _write_fake_mnist(tmp_path, ("",) * 4)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(30, 10, np.uint8))
    with pytest.raises(DataError, match="labels in 0..9"):
        load_mnist(tmp_path)


# ---------------------------------------------------------------- toy sets


def test_random_classification():
    x, y = random_classification()
    assert x.shape == (16, 10) and x.dtype == np.float64
    assert y.shape == (16,) and y.dtype == np.int64
    assert y.min() >= 0 and y.max() < 5
    x2, y2 = random_classification(n_samples=500, n_features=3, n_classes=7, seed=3, dtype=np.float32)
    assert x2.shape == (500, 3) and x2.dtype == np.float32
    assert set(np.unique(y2)) == set(range(7))
    assert abs(x2.mean()) < 0.15 and abs(x2.std() - 1) < 0.1  # standard normal
    xa, ya = random_classification(seed=0)
    xb, yb = random_classification(seed=1)
    np.testing.assert_array_equal(xa, x)  # same seed, same data
    np.testing.assert_array_equal(ya, y)
    assert not np.array_equal(xa, xb)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_outputs", [1, 4])
def test_linear_regression(dtype, n_outputs):
    x, y, w, b = linear_regression(n_samples=20, n_features=6, n_outputs=n_outputs, seed=5, dtype=dtype)
    assert x.shape == (20, 6) and w.shape == (6, n_outputs) and b.shape == (n_outputs,)
    assert y.shape == (20, n_outputs)
    assert all(a.dtype == dtype for a in (x, y, w, b))
    np.testing.assert_array_equal(y, x @ w + b)  # exact, noise-free
    # And (x, y) determine (w, b): least squares recovers them.
    coef, *_ = np.linalg.lstsq(np.hstack([x, np.ones((20, 1), dtype)]).astype(np.float64), y, rcond=None)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(coef[:-1], w, atol=tol)
    np.testing.assert_allclose(coef[-1], b, atol=tol)
