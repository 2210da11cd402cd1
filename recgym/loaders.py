"""Readers for the public KuaiRec / KuaiRand files, with errors that name file, line and column.

Nothing here touches the network: the shipped KuaiRand-Pure item features are package data, and
the KuaiRec files are read from a ``data_dir`` the user downloaded themselves (layout, source and
citation: ``docs/data.md``). KuaiRec's interaction matrices (millions of rows) are parsed by pandas'
C reader and validated with vectorised checks that report the first bad row's line; the small item
files are read row by row with :mod:`csv`. Derived arrays are kept in an on-disk cache keyed by the
files' content (:func:`cache_dir`, :func:`read_cache`, :func:`write_cache`).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import hashlib
import io
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")

#: Category ids in KuaiRec's ``feat`` lists must lie in [0, MAX_CATEGORY_ID] (KuaiRec uses 0..30):
#: the world holds an (items, max id + 1) label matrix, so an absurd id would ask for gigabytes.
MAX_CATEGORY_ID = 1023

#: Largest dense (users x items) float32 reward matrix the KuaiRec loader builds (4 GiB; KuaiRec's
#: fully observed small matrix needs 19 MiB).
MAX_REWARD_MATRIX_BYTES = 4 * 2**30

#: Columns read from KuaiRec's ``small_matrix.csv`` / ``big_matrix.csv``; others are skipped.
INTERACTION_COLUMNS = ("user_id", "video_id", "watch_ratio")

#: The files of a KuaiRec ``data_dir`` (``big_matrix.csv`` is optional).
SMALL_MATRIX, ITEM_CATEGORIES, BIG_MATRIX = "small_matrix.csv", "item_categories.csv", "big_matrix.csv"

_NEWLINE, _COMMA = ord("\n"), ord(",")
_SCAN_BLOCK = 1 << 24  # bytes per block of the vectorised line scan


class DataFileError(ValueError):
    """A data file is missing or malformed; the message names the file, line and column."""


def _decode(path: Path, data: bytes) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped), or an error naming the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        bad_bytes = data[error.start:error.end]
        raise DataFileError(f"{path}: line {line}: not UTF-8 text ({error.reason}: {bad_bytes!r})") from None


def _check_header(path: Path, header: list[str], required: tuple[str, ...]) -> None:
    """The header must name each required column exactly once (shown cut to 200 characters)."""
    missing = [c for c in required if c not in header]
    repeated = [c for c in required if header.count(c) > 1]
    if missing or repeated:
        shown = repr(header) if len(repr(header)) <= 200 else repr(header)[:200] + "..."
        problem = f"missing column(s) {missing}" if missing else f"column(s) {repeated} appear more than once"
        raise DataFileError(f"{path}: line 1: {problem}; header is {shown}")


def _rows(path: Path, data: bytes, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) of a small CSV file, checking the header has the required columns."""
    reader = csv.DictReader(io.StringIO(_decode(path, data), newline=""), strict=True)
    last_line = 1
    try:
        header = reader.fieldnames or []
        _check_header(path, list(header), required)
        for row in reader:
            if None in row or any(row[c] is None for c in required):
                raise DataFileError(
                    f"{path}: line {reader.line_num}: expected {len(header)} fields, got a different count"
                )
            last_line = reader.line_num
            yield reader.line_num, row
    except csv.Error as error:
        raise DataFileError(f"{path}: line {last_line + 1}: malformed CSV ({error}); is a quote left open?") from None


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    return path.read_bytes()


def _parse(path: Path, line: int, column: str, text: str, convert: Callable[[str], T], expected: str) -> T:
    try:
        return convert(text)
    except (ValueError, TypeError, SyntaxError):
        raise DataFileError(f"{path}: line {line}, column '{column}': expected {expected}, got {text!r}") from None


def _int_list(text: str) -> list[int]:
    """'39' or '3,20' (KuaiRand tag) or '[8, 27]' (KuaiRec feat) -> list of ints; '' -> []."""
    stripped = text.strip().strip("[]")
    return [int(part) for part in stripped.split(",") if part.strip()]


def _category_list(text: str) -> list[int]:
    """A KuaiRec ``feat`` list whose ids all lie in [0, MAX_CATEGORY_ID]."""
    categories = _int_list(text)
    if any(c < 0 or c > MAX_CATEGORY_ID for c in categories):
        raise ValueError(text)
    return categories


def _non_negative_float(text: str) -> float:
    """A finite number >= 0, or NaN (how an empty field reads)."""
    value = float(text)
    if value != value:
        return value
    if not 0 <= value < float("inf"):
        raise ValueError(text)
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


@dataclass(frozen=True)
class KuaiRandItems:
    """Item side of KuaiRand-Pure: (I, T) bool tags, (I,) creator index, (I,) age in days, (I,) float32
    duration in seconds (``video_duration`` in ms / 1000; NaN where the file leaves it empty or has no
    such column)."""

    tags: np.ndarray
    creator: np.ndarray
    age_days: np.ndarray
    duration_s: np.ndarray


def read_kuairand_items(path: Path) -> KuaiRandItems:
    """Read ``video_features_basic_pure.csv``; video ids must be 0..I-1 (any order)."""
    video_ids, authors, dates, tag_lists, durations = [], [], [], [], []
    for line, row in _rows(path, _read_bytes(path), ("video_id", "author_id", "upload_dt", "tag")):
        video_ids.append(_parse(path, line, "video_id", row["video_id"], int, "an integer id"))
        duration = row.get("video_duration") or "nan"
        durations.append(_parse(path, line, "video_duration", duration, _non_negative_float, "a duration in ms >= 0"))
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
    duration_s = np.asarray(durations, np.float32) / np.float32(1000.0)
    return KuaiRandItems(tags=tags[order], creator=creator[order], age_days=age[order], duration_s=duration_s[order])


#: KuaiRand-Pure ``user_active_degree`` values, in the order of the one-hot features.
ACTIVE_DEGREES = ("full_active", "high_active", "middle_active", "low_active", "single_low_active",
                  "2_14_day_new", "day_new", "30day_retention", "UNKNOWN")
#: Count columns of ``user_features_pure.csv`` (scaled log1p(count) / log1p(max count)).
USER_COUNTS = ("follow_user_num", "fans_user_num", "friend_user_num", "register_days")
#: Flag columns (1 = yes; the file's -124 means missing, read as 0).
USER_FLAGS = ("is_lowactive_period", "is_live_streamer", "is_video_author")
#: Anonymised categorical columns: code / the column's largest code, -1 where empty.
USER_CODES = tuple(f"onehot_feat{i}" for i in range(18))


@dataclass(frozen=True)
class KuaiRandUsers:
    """User side of KuaiRand-Pure: (U, F) float32 static features in [-1, 1], row u = ``user_id`` u,
    and their (F,) names: the active degree one-hot (:data:`ACTIVE_DEGREES`), the flags, the scaled
    counts and the anonymised codes."""

    features: np.ndarray
    names: tuple[str, ...]


def read_kuairand_users(path: Path) -> KuaiRandUsers:
    """Read (a column subset of) ``user_features_pure.csv``, plain or gzip; user ids must be 0..U-1."""
    data = _read_bytes(path)
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    required = ("user_id", "user_active_degree", *USER_FLAGS, *USER_COUNTS, *USER_CODES)
    user_ids, rows = [], []
    for line, row in _rows(path, data, required):
        user_ids.append(_parse(path, line, "user_id", row["user_id"], _non_negative_int, "an integer id >= 0"))
        degree = row["user_active_degree"]
        if degree not in ACTIVE_DEGREES:
            raise DataFileError(f"{path}: line {line}, column 'user_active_degree': expected one of "
                                f"{list(ACTIVE_DEGREES)}, got {degree!r}")
        values = [float(degree == d) for d in ACTIVE_DEGREES]
        values += [float(_parse(path, line, c, row[c], int, "an integer flag") == 1) for c in USER_FLAGS]
        values += [_parse(path, line, c, row[c], _non_negative_float, "a count >= 0") for c in USER_COUNTS]
        values += [_parse(path, line, c, row[c] or "-1", float, "a numeric code or empty") for c in USER_CODES]
        rows.append(values)
    n_users = len(user_ids)
    if sorted(user_ids) != list(range(n_users)):
        raise DataFileError(f"{path}: column 'user_id' must hold each id 0..{n_users - 1} exactly once")
    table = np.asarray(rows, np.float64)[np.argsort(user_ids)]
    counts = slice(len(ACTIVE_DEGREES) + len(USER_FLAGS), len(ACTIVE_DEGREES) + len(USER_FLAGS) + len(USER_COUNTS))
    table[:, counts] = np.log1p(table[:, counts]) / np.maximum(np.log1p(table[:, counts].max(axis=0)), 1e-12)
    codes = table[:, counts.stop:]
    table[:, counts.stop:] = np.where(codes >= 0, codes / np.maximum(codes.max(axis=0), 1.0), -1.0)
    return KuaiRandUsers(features=table.astype(np.float32), names=(*ACTIVE_DEGREES, *USER_FLAGS, *USER_COUNTS, *USER_CODES))


@dataclass(frozen=True)
class KuaiRecFolder:
    """The bytes of a KuaiRec ``data/`` folder: ``small_matrix.csv``, ``item_categories.csv`` and,
    when present, ``big_matrix.csv`` (``contents`` maps file name to bytes)."""

    path: Path
    contents: dict[str, bytes]

    @classmethod
    def read(cls, data_dir: str | Path) -> KuaiRecFolder:
        path = Path(data_dir)
        if not path.is_dir():
            raise DataFileError(f"{path}: data_dir is not a directory")
        names = [SMALL_MATRIX, ITEM_CATEGORIES] + ([BIG_MATRIX] if (path / BIG_MATRIX).is_file() else [])
        return cls(path, {name: _read_bytes(path / name) for name in names})

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 of the files' names and bytes: equal digests mean equal contents."""
        digest = hashlib.sha256()
        for name in sorted(self.contents):
            digest.update(f"{name}\0{len(self.contents[name])}\0".encode())
            digest.update(self.contents[name])
        return digest.hexdigest()


@dataclass(frozen=True)
class KuaiRecMatrix:
    """KuaiRec's fully observed small matrix as dense arrays (users and items re-indexed densely).

    rewards: (U, I) float32 watch_ratio clipped to [0, 5] (missing cells 0);
    categories: (I, C) bool ``feat`` labels, C = 1 + the largest category id of the file's kept rows;
    popularity: (I,) float64 positive-interaction counts, each (user, item) pair counted once;
    user_ids, item_ids: (U,) and (I,) int64 original ``user_id`` / ``video_id`` of each row / column.
    """

    rewards: np.ndarray
    categories: np.ndarray
    popularity: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray


def load_kuairec_matrix(folder: KuaiRecFolder, positive_threshold: float = 0.6) -> KuaiRecMatrix:
    """Parse a KuaiRec folder's ``small_matrix.csv`` and ``item_categories.csv``.

    A file that repeats a key keeps its last row: the last (user_id, video_id) row of a matrix file
    sets the reward and is the only one counted in popularity; the last ``video_id`` row of
    ``item_categories.csv`` sets the item's labels. Popularity counts come from ``big_matrix.csv``
    when present (the logged training data, as in DORL), else from the small matrix's positives
    (watch_ratio >= ``positive_threshold``).
    """
    small_path = folder.path / SMALL_MATRIX
    small = _read_interactions(small_path, folder.contents[SMALL_MATRIX])
    user_idx, user_ids = pd.factorize(small.users, sort=True)
    item_idx, item_ids = pd.factorize(small.videos, sort=True)
    n_users, n_items = user_ids.size, item_ids.size
    if 4 * n_users * n_items > MAX_REWARD_MATRIX_BYTES:
        raise DataFileError(
            f"{small_path}: {n_users} users x {n_items} items need a {4 * n_users * n_items / 2**30:.1f} GiB dense "
            f"reward matrix (limit {MAX_REWARD_MATRIX_BYTES / 2**30:.0f} GiB); {SMALL_MATRIX} must be KuaiRec's "
            "fully observed small matrix"
        )
    cells = user_idx.astype(np.int64) * n_items + item_idx
    last = _last_of_each(cells)
    rewards = np.zeros(n_users * n_items, dtype=np.float32)
    rewards[cells[last]] = np.clip(small.ratios[last], 0.0, 5.0)
    categories = _read_categories(folder.path / ITEM_CATEGORIES, folder.contents[ITEM_CATEGORIES], item_ids, small_path)

    if BIG_MATRIX in folder.contents:
        big = _read_interactions(folder.path / BIG_MATRIX, folder.contents[BIG_MATRIX])
        column = np.minimum(np.searchsorted(item_ids, big.videos), n_items - 1)
        known = item_ids[column] == big.videos
        big_users = pd.factorize(big.users[known])[0].astype(np.int64)
        column, ratios = column[known], big.ratios[known]
        last = _last_of_each(big_users * n_items + column)
        popularity = np.bincount(column[last & (ratios >= positive_threshold)], minlength=n_items)
    else:
        popularity = np.bincount(item_idx[last & (small.ratios >= positive_threshold)], minlength=n_items)
    return KuaiRecMatrix(rewards.reshape(n_users, n_items), categories, popularity.astype(np.float64),
                         user_ids.astype(np.int64), item_ids.astype(np.int64))


def _last_of_each(keys: np.ndarray) -> np.ndarray:
    """(N,) bool: True at the last occurrence of each key."""
    return ~pd.Series(keys).duplicated(keep="last").to_numpy()


def _read_categories(path: Path, data: bytes, item_ids: np.ndarray, small_path: Path) -> np.ndarray:
    """(I, C) bool ``feat`` labels of ``item_ids`` from ``item_categories.csv`` (the last row of a video wins)."""
    feats: dict[int, list[int]] = {}
    for line, row in _rows(path, data, ("video_id", "feat")):
        video = _parse(path, line, "video_id", row["video_id"], _non_negative_int, "a non-negative integer id")
        feats[video] = _parse(path, line, "feat", row["feat"], _category_list,
                              f"a list of category ids in [0, {MAX_CATEGORY_ID}] like [8, 27]")
    missing = [int(i) for i in item_ids if int(i) not in feats]
    if missing:
        raise DataFileError(f"{path}: no 'feat' row for video_id(s) {missing[:5]} used in {small_path.name}")
    labels = [feats[int(video)] for video in item_ids]
    rows = np.repeat(np.arange(item_ids.size), [len(cats) for cats in labels])
    categories = np.zeros((item_ids.size, 1 + max((c for cs in feats.values() for c in cs), default=0)), dtype=bool)
    categories[rows, np.fromiter((c for cats in labels for c in cats), dtype=np.int64, count=rows.size)] = True
    return categories


@dataclass(frozen=True)
class Interactions:
    """The rows of a KuaiRec matrix file: original ``user_id``, ``video_id`` and ``watch_ratio``."""

    users: np.ndarray
    videos: np.ndarray
    ratios: np.ndarray


@dataclass(frozen=True)
class _Lines:
    """Where each line of a file ends and how many commas it holds (one vectorised scan)."""

    ends: np.ndarray
    commas: np.ndarray

    @classmethod
    def scan(cls, data: bytes) -> _Lines:
        raw = np.frombuffer(data, dtype=np.uint8)
        ends, commas, carry = [], [], 0
        for start in range(0, raw.size, _SCAN_BLOCK):
            block = raw[start:start + _SCAN_BLOCK]
            newlines = np.flatnonzero(block == _NEWLINE)
            comma_positions = np.flatnonzero(block == _COMMA)
            before = np.searchsorted(comma_positions, newlines)
            if newlines.size:
                ends.append(newlines + start)
                commas.append(np.diff(before, prepend=0))
                commas[-1][0] += carry
                carry = comma_positions.size - before[-1]
            else:
                carry += comma_positions.size
        if raw.size and raw[-1] != _NEWLINE:  # a last line without its newline
            ends.append(np.array([raw.size]))
            commas.append(np.array([carry]))
        return cls(np.concatenate(ends or [np.zeros(0, np.int64)]), np.concatenate(commas or [np.zeros(0, np.int64)]))

    def text(self, data: bytes, index: int) -> str:
        start = self.ends[index - 1] + 1 if index else 0
        return data[start:self.ends[index]].decode("utf-8", errors="replace").rstrip("\r")


def _read_interactions(path: Path, data: bytes) -> Interactions:
    """Parse a KuaiRec matrix file's user_id, video_id and watch_ratio columns.

    Every non-blank line must have the header's field count (fields are plain comma-separated
    values: quotes are not special); ids must be non-negative integers and watch ratios finite and
    >= 0. The first offending line is reported with its column and text.
    """
    first_newline = data.find(b"\n")
    header_line = data[:first_newline if first_newline >= 0 else None].decode("utf-8-sig", errors="replace")
    header = header_line.rstrip("\r").split(",")
    _check_header(path, header, INTERACTION_COLUMNS)
    lone_return = re.search(rb"\r(?!\n)", data) if b"\r" in data else None
    if lone_return:
        line = data.count(b"\n", 0, lone_return.start()) + 1
        raise DataFileError(f"{path}: line {line}: a carriage return inside a line (lines end in \\n or \\r\\n)")
    lines = _Lines.scan(data)
    for index in np.flatnonzero(lines.commas != len(header) - 1):  # blank lines are skipped, like pandas
        text = lines.text(data, index)
        if text.strip():
            raise DataFileError(f"{path}: line {index + 1}: expected {len(header)} fields, got {text.count(',') + 1}")
    frame = pd.read_csv(io.BytesIO(data), usecols=list(INTERACTION_COLUMNS), quoting=csv.QUOTE_NONE,
                        index_col=False, low_memory=False, encoding_errors="replace")
    if frame.empty:
        raise DataFileError(f"{path}: no data rows after the header")

    def fail(bad: np.ndarray, column: str, expected: str) -> NoReturn:
        index = np.flatnonzero(lines.commas == len(header) - 1)[1 + np.argmax(bad)]
        text = lines.text(data, index).split(",")[header.index(column)]
        raise DataFileError(f"{path}: line {index + 1}, column '{column}': expected {expected}, got {text!r}")

    ids = {}
    for column in ("user_id", "video_id"):
        values = frame[column]
        if values.dtype.kind == "i":
            values = values.to_numpy()
            bad = values < 0
        else:
            values = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~((values >= 0) & (values < 2.0**63) & (values == np.floor(values)))
        if bad.any():
            fail(bad, column, "a non-negative integer id")
        ids[column] = values.astype(np.int64)
    ratios = pd.to_numeric(frame["watch_ratio"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~(np.isfinite(ratios) & (ratios >= 0))
    if bad.any():
        fail(bad, "watch_ratio", "a finite number >= 0")
    return Interactions(ids["user_id"], ids["video_id"], ratios)


def cache_dir() -> Path:
    """Folder of recgym's on-disk cache: ``$RECGYM_CACHE``, else ``$XDG_CACHE_HOME/recgym``, else
    ``~/.cache/recgym``. Every file in it can be deleted at any time (it is rebuilt on demand)."""
    if os.environ.get("RECGYM_CACHE"):
        return Path(os.environ["RECGYM_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recgym"


def read_cache(key: str) -> dict[str, np.ndarray] | None:
    """The arrays cached under ``key``, or None when there are none (or the file is unreadable)."""
    try:
        with np.load(cache_dir() / f"{key}.npz", allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def write_cache(key: str, arrays: dict[str, np.ndarray]) -> None:
    """Cache ``arrays`` under ``key``, atomically: a temporary file in the cache folder renamed over
    the final name, so a reader never sees a half-written file. A cache that cannot be written is a
    warning, not an error."""
    directory = cache_dir()
    temporary = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=f".{key}.", suffix=".tmp", delete=False) as handle:
            temporary = Path(handle.name)
            np.savez(handle, **arrays)
        os.replace(temporary, directory / f"{key}.npz")
    except OSError as error:
        warnings.warn(f"recgym: could not write the cache in {directory} ({error}); "
                      "set RECGYM_CACHE to a writable folder", stacklevel=2)
    finally:
        if temporary is not None:  # gone after the rename; left by a failed or interrupted write
            temporary.unlink(missing_ok=True)


def write_synthetic_kuairec(data_dir: str | Path, n_users: int = 1411, n_items: int = 3327, n_videos: int = 10728,
                            n_categories: int = 31, seed: int = 0) -> Path:
    """Write made-up data in KuaiRec's file schema into ``data_dir`` (for tests and benchmarks).

    ``small_matrix.csv`` holds every (user, video) pair of ``n_users`` x ``n_items`` in KuaiRec's
    eight columns (``user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio``;
    the defaults give the real small matrix's 4.7 M rows); ``item_categories.csv`` gives each of
    ``n_videos`` videos 1-4 labels of ``n_categories`` as ``video_id,feat`` rows like ``"[8, 27]"``.
    Returns ``data_dir``.
    """
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    videos = np.sort(rng.choice(n_videos, size=n_items, replace=False))
    taste = rng.standard_normal((n_users, 4)) @ rng.standard_normal((4, n_items))
    ratio = rng.lognormal(-0.3, 0.6, size=(n_users, n_items)) * np.exp(0.3 * taste)
    duration = rng.integers(3_000, 60_000, size=n_items)
    millis = 1_593_898_068_378 + rng.integers(0, 5_000_000_000, size=(n_users, n_items))
    stamps = np.datetime_as_string(millis.ravel().astype("datetime64[ms]"))
    pd.DataFrame({
        "user_id": np.repeat(np.arange(n_users) * 5 + 14, n_items),
        "video_id": np.tile(videos, n_users),
        "play_duration": (ratio * duration).astype(np.int64).ravel(),
        "video_duration": np.tile(duration, n_users),
        "time": pd.Series(stamps).str.replace("T", " ", regex=False),
        "date": pd.Series(stamps).str.slice(0, 10).str.replace("-", "", regex=False).astype(np.float64),
        "timestamp": millis.ravel() / 1000,
        "watch_ratio": ratio.ravel(),
    }).to_csv(path / SMALL_MATRIX, index=False)
    counts = rng.integers(1, 5, size=n_videos)
    feats = ["[" + ", ".join(map(str, sorted(rng.choice(n_categories, size=k, replace=False)))) + "]" for k in counts]
    pd.DataFrame({"video_id": np.arange(n_videos), "feat": feats}).to_csv(path / ITEM_CATEGORIES, index=False)
    return path
