"""Tensor files of the conformance vectors: byte-deterministic ``.npy`` writing and reading (CONF-1.4).

Every tensor of a case is one NumPy ``.npy`` file, format version 1.0, little-endian, C order. This
module writes the header itself (rather than ``np.save``) so that the bytes never depend on the NumPy
version, and reports the byte offset of the raw data so that a harness in C can ``fseek`` past the
header and ``fread`` the values.

Logical dtypes are named as in the case format: ``bool``, ``int8`` .. ``int64``, ``uint8`` ..
``uint64``, ``float16``, ``bfloat16``, ``float32``, ``float64``, ``complex64``. NumPy has no
``bfloat16``: such a tensor is stored as the ``uint16`` bit patterns and its case entry says
``"dtype": "bfloat16"``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

MAGIC = b"\x93NUMPY"
HEADER_ALIGN = 64

# logical dtype name -> (NumPy dtype of the stored array, NumPy descr in the header)
DTYPES: dict[str, np.dtype] = {
    "bool": np.dtype("|b1"),
    "int8": np.dtype("|i1"), "int16": np.dtype("<i2"), "int32": np.dtype("<i4"), "int64": np.dtype("<i8"),
    "uint8": np.dtype("|u1"), "uint16": np.dtype("<u2"), "uint32": np.dtype("<u4"), "uint64": np.dtype("<u8"),
    "float16": np.dtype("<f2"), "bfloat16": np.dtype("<u2"), "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"), "complex64": np.dtype("<c8"),
}


def dtype_name(a: np.ndarray) -> str:
    """The logical dtype name of a stored array (bfloat16 arrays must be named by the caller)."""
    for name, dt in DTYPES.items():
        if name != "bfloat16" and a.dtype == dt:
            return name
    raise ValueError(f"dtype {a.dtype} has no name in the conformance case format")


def npy_bytes(a: np.ndarray) -> bytes:
    """The .npy (v1.0) encoding of ``a``: same bytes for the same values on every platform."""
    a = np.asarray(a)
    dt = DTYPES[dtype_name(a)]
    a = np.asarray(a.astype(dt, copy=False), order="C")          # (ascontiguousarray would make 0-d arrays 1-d)
    shape = "(" + "".join(f"{n}, " for n in a.shape)[:-2] + ("," if a.ndim == 1 else "") + ")"
    header = f"{{'descr': '{dt.str}', 'fortran_order': False, 'shape': {shape}, }}"
    pad = -(len(MAGIC) + 4 + len(header) + 1) % HEADER_ALIGN
    header = (header + " " * pad + "\n").encode("latin1")
    return MAGIC + bytes([1, 0]) + len(header).to_bytes(2, "little") + header + a.tobytes(order="C")


def parse_npy(raw: bytes, where: str = "") -> tuple[np.ndarray, int]:
    """Decode .npy bytes (format 1.x/2.x, C order) into (array, data offset); ValueError naming ``where``."""
    if raw[:6] != MAGIC:
        raise ValueError(f"{where}: not a .npy file (bad magic)")
    major = raw[6]
    if major == 1:
        hlen, start = int.from_bytes(raw[8:10], "little"), 10
    elif major in (2, 3):
        hlen, start = int.from_bytes(raw[8:12], "little"), 12
    else:
        raise ValueError(f"{where}: unsupported .npy version {major}")
    try:
        header = ast.literal_eval(raw[start:start + hlen].decode("latin1"))
        dt, shape = np.dtype(header["descr"]), tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError) as e:
        raise ValueError(f"{where}: unreadable .npy header ({e})") from None
    if header.get("fortran_order"):
        raise ValueError(f"{where}: Fortran-order .npy files are not accepted")
    offset = start + hlen
    n = int(np.prod(shape, dtype=np.int64))
    if len(raw) - offset != n * dt.itemsize:
        raise ValueError(f"{where}: {len(raw) - offset} data bytes, expected {n * dt.itemsize} for shape {shape} {dt}")
    return np.frombuffer(raw, dtype=dt, count=n, offset=offset).reshape(shape).copy(), offset


def read_npy(path: str | Path) -> np.ndarray:
    return parse_npy(Path(path).read_bytes(), str(path))[0]


def read_output(path: str | Path, dtype: str, shape: list[int] | None) -> np.ndarray:
    """An output file a harness wrote: a .npy file (recognised by its magic) or raw little-endian bytes.

    Raw bytes need ``dtype`` and ``shape`` (those of the request, or the reply's); without a shape a
    raw file is read as a flat array. ValueError names the file when the size does not fit.
    """
    raw = Path(path).read_bytes()
    if raw[:6] == MAGIC:
        return parse_npy(raw, str(path))[0]
    dt = DTYPES[dtype]
    if len(raw) % dt.itemsize:
        raise ValueError(f"{path}: {len(raw)} bytes is not a whole number of {dtype} elements")
    a = np.frombuffer(raw, dtype=dt).copy()
    if shape is None:
        return a
    if a.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"{path}: {a.size} {dtype} elements, expected shape {list(shape)}")
    return a.reshape(shape)


def bits(a: np.ndarray) -> np.ndarray:
    """Bit patterns of an array as unsigned integers, for bit-exact comparison."""
    a = np.asarray(a, order="C")
    if a.dtype.kind == "c":
        a = a.view(np.float32 if a.dtype.itemsize == 8 else np.float64)
    if a.dtype == np.bool_:
        return a.view(np.uint8)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])
