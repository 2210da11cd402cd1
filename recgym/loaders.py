"""Readers for the public KuaiRec / KuaiRand files, with errors that name file, line and column.

Nothing here touches the network: the shipped KuaiRand-Pure item features are package data, and
the KuaiRec matrix is read from a ``data_dir`` the user downloaded themselves.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")


class DataFileError(ValueError):
    """A data file is missing or malformed; the message names the file, line and column."""


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) of a CSV file, checking the header has the required columns."""
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFileError(f"{path}: line 1: missing column(s) {missing}; header is {header}")
        for row in reader:
            if None in row or any(row[c] is None for c in required):
                raise DataFileError(
                    f"{path}: line {reader.line_num}: expected {len(header)} fields, got a different count"
                )
            yield reader.line_num, row


def _parse(path: Path, line: int, column: str, text: str, convert: Callable[[str], T], expected: str) -> T:
    try:
        return convert(text)
    except (ValueError, TypeError, SyntaxError):
        raise DataFileError(f"{path}: line {line}, column '{column}': expected {expected}, got {text!r}") from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(text)
    return value


def _int_list(text: str) -> list[int]:
    """'39' or '3,20' (KuaiRand tag) or '[8, 27]' (KuaiRec feat) -> list of ints; '' -> []."""
    stripped = text.strip().strip("[]")
    return [int(part) for part in stripped.split(",") if part.strip()]


@dataclass(frozen=True)
class KuaiRandItems:
    """Item side of KuaiRand-Pure: (I, T) bool tags, (I,) creator index, (I,) age in days."""

    tags: np.ndarray
    creator: np.ndarray
    age_days: np.ndarray


def read_kuairand_items(path: Path) -> KuaiRandItems:
    """Read ``video_features_basic_pure.csv``; video ids must be 0..I-1 (any order)."""
    video_ids, authors, dates, tag_lists = [], [], [], []
    for line, row in _rows(path, ("video_id", "author_id", "upload_dt", "tag")):
        video_ids.append(_parse(path, line, "video_id", row["video_id"], int, "an integer id"))
        authors.append(_parse(path, line, "author_id", row["author_id"], int, "an integer id"))
        dates.append(_parse(path, line, "upload_dt", row["upload_dt"], dt.date.fromisoformat, "a YYYY-MM-DD date"))
        tag_lists.append(_parse(path, line, "tag", row["tag"], _int_list, "comma-separated integer tags"))
    n_items = len(video_ids)
    if sorted(video_ids) != list(range(n_items)):
        raise DataFileError(f"{path}: column 'video_id' must hold each id 0..{n_items - 1} exactly once")
    order = np.argsort(video_ids)
    tag_values = sorted({t for tags in tag_lists for t in tags})
    tag_index = {t: i for i, t in enumerate(tag_values)}
    tags = np.zeros((n_items, len(tag_values)), dtype=bool)
    for item, item_tags in enumerate(tag_lists):
        tags[item, [tag_index[t] for t in item_tags]] = True
    _, creator = np.unique(np.asarray(authors), return_inverse=True)
    newest = max(dates)
    age = np.array([(newest - d).days for d in dates], dtype=np.float32)
    return KuaiRandItems(tags=tags[order], creator=creator[order], age_days=age[order])


@dataclass(frozen=True)
class KuaiRecMatrix:
    """KuaiRec's fully observed small matrix as dense arrays (users and items re-indexed densely).

    rewards: (U, I) float32 watch_ratio clipped to [0, 5] (missing cells 0);
    categories: (I, 31) bool ``feat`` labels; popularity: (I,) float64 positive-interaction counts.
    """

    rewards: np.ndarray
    categories: np.ndarray
    popularity: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray


def load_kuairec_matrix(data_dir: Path, positive_threshold: float = 0.6) -> KuaiRecMatrix:
    """Read ``small_matrix.csv`` and ``item_categories.csv`` from KuaiRec's ``data/`` folder.

    Popularity counts come from ``big_matrix.csv`` when present (the logged training data, as in
    DORL), else from the small matrix's positives (watch_ratio >= ``positive_threshold``).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataFileError(f"{data_dir}: data_dir is not a directory")
    small = data_dir / "small_matrix.csv"
    triples = list(_read_watch_ratios(small))
    users = np.array([t[0] for t in triples])
    items = np.array([t[1] for t in triples])
    ratios = np.clip(np.array([t[2] for t in triples], dtype=np.float32), 0.0, 5.0)
    user_ids, user_idx = np.unique(users, return_inverse=True)
    item_ids, item_idx = np.unique(items, return_inverse=True)
    rewards = np.zeros((user_ids.size, item_ids.size), dtype=np.float32)
    rewards[user_idx, item_idx] = ratios

    categories_path = data_dir / "item_categories.csv"
    feats: dict[int, list[int]] = {}
    for line, row in _rows(categories_path, ("video_id", "feat")):
        video = _parse(categories_path, line, "video_id", row["video_id"], int, "an integer id")
        feats[video] = _parse(categories_path, line, "feat", row["feat"], _int_list, "a list like [8, 27]")
    missing = [int(i) for i in item_ids if int(i) not in feats]
    if missing:
        raise DataFileError(f"{categories_path}: no 'feat' row for video_id(s) {missing[:5]} used in {small.name}")
    n_cats = 1 + max((c for cs in feats.values() for c in cs), default=0)
    categories = np.zeros((item_ids.size, n_cats), dtype=bool)
    for column, video in enumerate(item_ids):
        categories[column, feats[int(video)]] = True

    big = data_dir / "big_matrix.csv"
    source = _read_watch_ratios(big) if big.is_file() else triples
    position = {int(v): i for i, v in enumerate(item_ids)}
    popularity = np.zeros(item_ids.size)
    for _, video, ratio in source:
        if ratio >= positive_threshold and video in position:
            popularity[position[video]] += 1
    return KuaiRecMatrix(rewards, categories, popularity, user_ids, item_ids)


def _read_watch_ratios(path: Path) -> Iterator[tuple[int, int, float]]:
    for line, row in _rows(path, ("user_id", "video_id", "watch_ratio")):
        yield (
            _parse(path, line, "user_id", row["user_id"], int, "an integer id"),
            _parse(path, line, "video_id", row["video_id"], int, "an integer id"),
            _parse(path, line, "watch_ratio", row["watch_ratio"], _finite_float, "a finite number"),
        )
