"""Tensor names, shapes and dtypes of a PyTorch pickle, read without unpickling it.

The doctor names every model file by its shapes; loading a ``.bin``/``.pt`` for that (even weights-only)
hands the file to the unpickler, which is more trust than an inventory needs. This reads the pickle's
opcodes as data (``pickletools.genops``) and follows only the few that build containers, constants and
``torch._utils._rebuild_tensor_v2`` calls: nothing is imported, called or allocated by size, and the work
is bounded. What it cannot follow becomes an opaque placeholder; bytes that are not a pickle raise
``ValueError``. Both ``torch.save`` formats are read: the zip (``*/data.pkl``) and the legacy stream.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass

MAX_PICKLE = 64 << 20  # bytes of data.pkl (a state dict's pickle is a few MB at most)
MAX_OPS = 4_000_000
MAX_DIMS = 8
MAX_DEPTH = 32
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool",
}
_TENSOR_REBUILDERS = {"_rebuild_tensor_v2", "_rebuild_tensor"}
_PARAM_REBUILDERS = {"_rebuild_parameter", "_rebuild_parameter_with_state"}


@dataclass(frozen=True)
class TensorHeader:
    shape: tuple[int, ...]
    dtype: str


class _Opaque:
    """Anything the reader does not follow (it is never built)."""


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(frozen=True)
class _Storage:
    dtype: str


class _Machine:
    def __init__(self) -> None:
        self.stack: list = []
        self.marks: list[int] = []
        self.memo: dict = {}
        self.ops = 0

    def pop_mark(self) -> list:
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def run(self, stream) -> object:
        for op, arg, _pos in pickletools.genops(stream):
            self.ops += 1
            if self.ops > MAX_OPS:
                raise ValueError("the pickle is too long to be a state dict")
            if op.name == "STOP":
                return self.stack.pop()
            self.step(op.name, arg)
        raise ValueError("the pickle has no end")

    def step(self, name: str, arg) -> None:  # noqa: C901 (one branch per opcode family)
        s = self.stack
        if name in ("PROTO", "FRAME"):
            return
        if name == "MARK":
            self.marks.append(len(s))
        elif name in ("EMPTY_DICT", "EMPTY_LIST", "EMPTY_SET", "EMPTY_TUPLE"):
            s.append({} if name == "EMPTY_DICT" else () if name == "EMPTY_TUPLE" else [])
        elif name == "DICT":
            items = self.pop_mark()
            s.append(_pairs({}, items))
        elif name in ("LIST", "TUPLE", "FROZENSET"):
            items = self.pop_mark()
            s.append(tuple(items) if name == "TUPLE" else list(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(s[-n:])
            del s[-n:]
            if len(items) != n:
                raise ValueError("stack underflow")
            s.append(items)
        elif name == "SETITEM":
            value, key = s.pop(), s.pop()
            _pairs(s[-1], [key, value])
        elif name == "SETITEMS":
            items = self.pop_mark()
            _pairs(s[-1], items)
        elif name in ("APPEND", "APPENDS", "ADDITEMS"):
            items = [s.pop()] if name == "APPEND" else self.pop_mark()
            if isinstance(s[-1], list):
                s[-1].extend(items)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[arg] = s[-1]
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = s[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            s.append(self.memo[arg])
        elif name == "NONE":
            s.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            s.append(name == "NEWTRUE")
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            s.append(_Global(module, attr))
        elif name == "STACK_GLOBAL":
            attr, module = s.pop(), s.pop()
            s.append(_Global(str(module), str(attr)))
        elif name == "REDUCE":
            args, func = s.pop(), s.pop()
            s.append(_reduce(func, args))
        elif name == "NEWOBJ":
            del s[-2:]
            s.append(_Opaque())
        elif name == "NEWOBJ_EX":
            del s[-3:]
            s.append(_Opaque())
        elif name == "BUILD":
            s.pop()  # state (e.g. a state dict's _metadata): not needed
        elif name == "BINPERSID":
            s.append(_persistent(s.pop()))
        elif name in ("PERSID", "EXT1", "EXT2", "EXT4"):
            s.append(_Opaque())
        elif name == "POP":
            s.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            s.append(s[-1])
        elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
                      "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
                      "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"):
            s.append(arg)
        else:
            raise ValueError(f"unsupported pickle opcode {name}")


def _pairs(target: object, items: list) -> object:
    if isinstance(target, dict):
        for key, value in zip(items[::2], items[1::2], strict=False):
            if isinstance(key, (str, int)):
                target[key] = value
    return target


def _persistent(pid: object) -> object:
    """torch.save's storage reference ('storage', <XStorage>, key, location, numel[, view])."""
    if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "storage" and isinstance(pid[1], _Global):
        return _Storage(_STORAGE_DTYPES.get(pid[1].name, "float32"))
    return _Opaque()


def _reduce(func: object, args: object) -> object:
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        return _Opaque()
    if func.module == "collections" and func.name == "OrderedDict":
        return {}
    if func.module != "torch._utils":
        return _Opaque()
    if func.name in _TENSOR_REBUILDERS and len(args) >= 3 and isinstance(args[0], _Storage):
        size = args[2]
        if (isinstance(size, tuple) and len(size) <= MAX_DIMS
                and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 40 for d in size)):
            return TensorHeader(tuple(size), args[0].dtype)
    if func.name in _PARAM_REBUILDERS and args and isinstance(args[0], TensorHeader):
        return args[0]
    return _Opaque()


def flatten(value: object, prefix: str = "", depth: int = 0) -> dict[str, TensorHeader]:
    """Nested dicts of tensors -> {"a.b.c": header}; anything else is dropped."""
    out: dict[str, TensorHeader] = {}
    if isinstance(value, TensorHeader):
        return {prefix.rstrip("."): value} if prefix else {}
    if not isinstance(value, dict) or depth > MAX_DEPTH:
        return out
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(flatten(item, f"{prefix}{key}.", depth + 1))
        elif isinstance(item, TensorHeader):
            out[f"{prefix}{key}"] = item
    return out


def read_pickle_tensors(path: str) -> dict[str, TensorHeader]:
    """Every tensor of a torch.save file: name -> shape and dtype. Raises ValueError for what is not one."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            entry = next((i for i in archive.infolist() if i.filename.endswith("data.pkl")), None)
            if entry is None:
                raise ValueError("a zip file without data.pkl (not a PyTorch file)")
            if entry.file_size > MAX_PICKLE:
                raise ValueError("its data.pkl is too large to be a state dict")
            with archive.open(entry) as f:
                data = f.read(MAX_PICKLE + 1)
        return flatten(_Machine().run(io.BytesIO(data)))
    with open(path, "rb") as f:
        stream = io.BytesIO(f.read(MAX_PICKLE))  # the pickles come first; the tensor bytes after them
    for _ in range(3):  # legacy format: magic number, protocol version, system info, then the object itself
        _Machine().run(stream)
    return flatten(_Machine().run(stream))
