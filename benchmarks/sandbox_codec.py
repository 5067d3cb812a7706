"""Plain data over pipes, shared by the sandbox's two children (``sandbox_tester.py``, T, and
``sandbox_supervisor.py``, S and U).

Values cross as tagged JSON of plain data only (None, bool, int, float, complex, str, bytes, list,
tuple, set, frozenset, dict): no objects, so nothing the program defines can change what the
tester compares. Standard library only: the children import it by path, from a bare interpreter.
"""
from __future__ import annotations

import json
import os
from typing import Any

MAX_LINE = 8 << 20  # bytes of one message: a bigger reply is a failure, not a memory bomb in T
MAX_DEPTH = 100
TAGS: dict[str, type[list[Any]] | type[tuple[Any, ...]] | type[set[Any]] | type[frozenset[Any]]] = {
    "l": list, "t": tuple, "s": set, "f": frozenset}


def encode(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready plain data; containers tagged by type. Subclasses of str, int and
    float cross as the base type (their methods stay behind)."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, complex):
        return ["c", value.real, value.imag]
    if isinstance(value, (bytes, bytearray)):
        return ["b", bytes(value).hex()]
    if isinstance(value, dict):
        return ["d"] + [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]
    for tag, kind in TAGS.items():
        if isinstance(value, kind):
            return [tag] + [encode(item, depth + 1) for item in value]
    return _encode_number(value)


def _encode_number(value: Any) -> int | float:
    """numpy's and other libraries' numbers, as the plain number they stand for."""
    import numbers

    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"cannot send a {type(value).__name__}")


def decode(value: Any, depth: int = 0) -> Any:
    """The value :func:`encode` made; anything else raises ValueError (a malformed reply)."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is not list or not value or type(value[0]) is not str:
        raise ValueError("malformed value")
    tag, rest = value[0], value[1:]
    if tag == "c" and len(rest) == 2 and all(type(x) in (int, float) for x in rest):
        return complex(rest[0], rest[1])
    if tag == "b" and len(rest) == 1 and type(rest[0]) is str:
        return bytes.fromhex(rest[0])
    if tag == "d":
        pairs = [(decode(p[0], depth + 1), decode(p[1], depth + 1)) for p in rest if type(p) is list and len(p) == 2]
        if len(pairs) != len(rest):
            raise ValueError("malformed dict")
        return dict(pairs)
    if tag in TAGS:
        return TAGS[tag](decode(item, depth + 1) for item in rest)
    raise ValueError("malformed value")


def send(fd: int, message: Any) -> None:
    """One newline-framed JSON message, written whole."""
    data = (json.dumps(message, allow_nan=True) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


class Lines:
    """Newline-framed messages from a pipe, at most MAX_LINE bytes each."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer = fd, b""

    def read(self) -> Any:
        while b"\n" not in self.buffer:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise EOFError("the other side closed the pipe")
            self.buffer += chunk
            if len(self.buffer) > MAX_LINE:
                raise ValueError("message too long")
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)
