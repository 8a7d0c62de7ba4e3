"""Arrays and values on the wire: small inputs as JSON, larger ones in NumPy's .npy format
(`application/x-npy`), which keeps the dtype and the shape exactly."""

from __future__ import annotations

import io
import json
from typing import Any, Optional, Sequence, Tuple

from .errors import InvalidInput

NPY = "application/x-npy"
#: Arrays up to this many bytes go as JSON (readable, any client); larger ones as .npy (a 64×64
#: float32 array is 16 KiB as .npy and 79 KB as JSON, which also takes ~10× longer to parse).
JSON_LIMIT = 4 * 1024


def numpy() -> Any:
    try:
        import numpy as np  # noqa: F401
    except ImportError:  # pragma: no cover - numpy is in the test and serve extras
        raise InvalidInput("this needs numpy: pip install 'fastgpu[numpy]'") from None
    return np


def as_array(data: Any, dtype: Optional[str]) -> Any:
    np = numpy()
    try:
        array = np.asarray(data, dtype=dtype) if dtype else np.asarray(data)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"the input is not an array of {dtype or 'numbers'}: {exc}") from None
    if array.dtype == object:
        raise InvalidInput("the input is not a regular array (ragged lists or objects)")
    return array


def check_shape(array: Any, shape: Optional[Sequence[int]]) -> None:
    """`shape` or a batch of it (one more leading dimension); -1 or None matches any size."""
    if shape is None:
        return
    want = tuple(shape)
    got = tuple(array.shape)

    def matches(dims: Tuple[int, ...]) -> bool:
        return len(dims) == len(want) and all(w in (-1, None) or w == d for w, d in zip(want, dims))

    if matches(got) or (len(got) == len(want) + 1 and matches(got[1:])):
        return
    raise InvalidInput(f"the input has shape {got}; the model takes {want} or a batch of it (N, {', '.join(map(str, want))})")


def to_npy(array: Any) -> bytes:
    np = numpy()
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def from_npy(data: bytes) -> Any:
    np = numpy()
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"not an .npy array: {exc}") from None


def encode_input(array: Any) -> Tuple[bytes, str]:
    """The body and its content type: JSON for small arrays, .npy for large ones."""
    if array.nbytes <= JSON_LIMIT and array.dtype.kind in "fiub":
        body = {"inputs": array.tolist(), "dtype": str(array.dtype)}
        return json.dumps(body, separators=(",", ":")).encode(), "application/json"
    return to_npy(array), NPY


def decode_output(content_type: str, content: bytes) -> Any:
    """A numpy array for .npy and for JSON that says it is one; else the JSON value."""
    if content_type.split(";")[0].strip() == NPY:
        return from_npy(content)
    value = json.loads(content) if content else None
    if isinstance(value, dict) and "outputs" in value:
        outputs = value["outputs"]
        if value.get("dtype") and isinstance(outputs, list):
            try:
                np = numpy()
                return np.asarray(outputs, dtype=value["dtype"])
            except InvalidInput:
                return outputs
        return outputs
    return value
