"""Interaction logs from files, as one :class:`Log`: the generic schema (CSV or Parquet), KuaiRec, KuaiRand.

Every bad input is a one-line :class:`~recgym.loaders.DataFileError` naming the file, the line (CSV:
the file's line number, header = line 1; Parquet: the row number) and the column: a missing column,
a bad value, an empty log. Files are read by pandas' C reader with blank lines kept, so the line
numbers are the file's own.

* ``csv``: ``user_id, item_id, timestamp`` (seconds; empty = unknown) and ``watch_ratio`` are required;
  ``click`` (default: watch_ratio > 0), the other :data:`recgym.params.SIGNALS`, ``session_id``,
  ``position``, ``category`` (``"3|7"``, ``"[3, 7]"`` or ``"3,7"``), ``creator``, ``duration`` (s) and
  ``is_random`` (1 = random exposure) are optional. Ids may be any values (re-indexed densely).
* ``kuairec``: a folder with ``item_categories.csv`` (``feat`` lists like ``"[8, 27]"``) and
  ``big_matrix.csv`` and/or ``small_matrix.csv``. The small matrix is KuaiRec's fully observed matrix:
  its rows are read as random exposure; some have no time (kept, without a session). Repeated
  (user, item) rows are kept as separate impressions. KuaiRec logs no click: click = watch_ratio > 0.
* ``kuairand``: a folder with ``log_standard*.csv`` and/or ``log_random*.csv`` (KuaiRand's columns:
  ``is_click``, ``play_time_ms / duration_ms`` as watch ratio, ``long_view``, ``is_like`` ...),
  ``video_features_basic_pure.csv`` (tags, authors, durations) and optionally ``user_features_pure.csv``.

Sessions: ``session_id`` where given, else a user's timed rows split where more than
:data:`SESSION_GAP_S` seconds pass between impressions; rows without time belong to no session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.loaders import (
    ITEM_CATEGORIES,
    MAX_CATEGORY_ID,
    DataFileError,
    _category_list,
    _read_bytes,
    _read_categories,
    read_kuairand_items,
    read_kuairand_users,
)
from recgym.params import SIGNALS

#: A new session starts when a user's impressions are more than this many seconds apart.
SESSION_GAP_S = 1800.0
FORMATS = ("csv", "kuairec", "kuairand")
BINARY_SIGNALS = tuple(name for name in SIGNALS if name != "watch_ratio")


@dataclass(frozen=True)
class Log:
    """An interaction log: N impressions of U users on I items (ids re-indexed densely).

    user, item: (N,) int64 in [0, U) / [0, I); timestamp: (N,) float64 seconds, NaN where unknown;
    session: (N,) int64 in [0, S), -1 for rows without time; position: (N,) int64 index in the session;
    signals: (N, 8) float32 in :data:`~recgym.params.SIGNALS` order (0 where the file has no such column);
    logged: the signal names the file had; random: (N,) bool random-exposure rows;
    user_ids, item_ids: (U,), (I,) the file's ids; item_cats: (I, C) bool; item_creator: (I,) int64;
    item_duration: (I,) float32 seconds, NaN unknown; user_features: (U, F) float32 in [-1, 1] or None.
    """

    source: str
    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    session: np.ndarray
    position: np.ndarray
    signals: np.ndarray
    logged: tuple[str, ...]
    random: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_cats: np.ndarray
    item_creator: np.ndarray
    item_duration: np.ndarray
    user_features: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return self.user.size

    @property
    def n_users(self) -> int:
        return self.user_ids.size

    @property
    def n_items(self) -> int:
        return self.item_ids.size

    @property
    def n_sessions(self) -> int:
        return int(self.session.max()) + 1 if self.session.size else 0

    def signal(self, name: str) -> np.ndarray:
        """(N,) float32 column ``name`` of :data:`~recgym.params.SIGNALS`."""
        return self.signals[:, SIGNALS.index(name)]


def _where(path: Path, index: int, parquet: bool) -> str:
    return f"{path}: row {index + 1}" if parquet else f"{path}: line {index + 2}"


def _read_frame(path: Path, columns: tuple[str, ...] | None = None) -> tuple[pd.DataFrame, bool]:
    """The table at ``path`` (CSV, optionally gzip, or Parquet) and whether it is Parquet."""
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    parquet = path.suffix == ".parquet"
    try:
        if parquet:
            frame = pd.read_parquet(path)
        else:
            usecols = (lambda name: name in columns) if columns else None
            frame = pd.read_csv(path, usecols=usecols, skip_blank_lines=False, low_memory=False)
    except ImportError as error:
        raise DataFileError(f"{path}: reading Parquet needs pyarrow: pip install 'recgym[parquet]' "
                            f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise DataFileError(f"{path}: not a readable table ({str(error).splitlines()[0]})") from None
    except pd.errors.EmptyDataError:
        raise DataFileError(f"{path}: empty file (no header)") from None
    if frame.empty:
        raise DataFileError(f"{path}: no data rows after the header")
    return frame, parquet


def _require(path: Path, frame: pd.DataFrame, required: tuple[str, ...]) -> None:
    missing = [name for name in required if name not in frame.columns]
    if missing:
        header = list(frame.columns)
        shown = repr(header) if len(repr(header)) <= 200 else repr(header)[:200] + "..."
        raise DataFileError(f"{path}: line 1: missing column(s) {missing}; header is {shown}")


def _numbers(path: Path, frame: pd.DataFrame, column: str, parquet: bool, allow_missing: bool, low: float = 0.0,
             binary: bool = False) -> np.ndarray:
    """(N,) float64 column: finite numbers >= ``low`` (0 / 1 if ``binary``), NaN allowed if ``allow_missing``.
    A date-time column (a Parquet timestamp) is read as seconds since 1970 (UTC), NaT as missing."""
    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        stamps = raw.dt.tz_convert("UTC").dt.tz_localize(None) if raw.dt.tz is not None else raw
        values = (stamps - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values)
    bad = ~(missing | (np.isfinite(values) & (values >= low)))
    if binary:
        bad |= ~missing & (values != 0) & (values != 1)
    if not allow_missing:
        bad |= missing
    if bad.any():
        index = int(np.argmax(bad))
        expected = "0 or 1" if binary else f"a finite number >= {low:g}" + (" or empty" if allow_missing else "")
        shown = raw.iloc[index]
        shown = shown.item() if isinstance(shown, np.generic) else shown
        raise DataFileError(f"{_where(path, index, parquet)}, column '{column}': expected {expected}, "
                            f"got {'an empty field' if pd.isna(shown) else repr(shown)}")
    return values


def _ids(path: Path, frame: pd.DataFrame, column: str, parquet: bool) -> np.ndarray:
    raw = frame[column]
    missing = raw.isna().to_numpy()
    if missing.any():
        raise DataFileError(f"{_where(path, int(np.argmax(missing)), parquet)}, column '{column}': expected an id, "
                            "got an empty field")
    return raw.to_numpy()


def _label_list(value: object) -> list[int]:
    """A ``category`` field as category ids in [0, MAX_CATEGORY_ID]: '3|7', '[3, 7]', '3,7' or a number
    (pandas reads a column of single ids as numbers; an empty field is NaN) -> [3, 7]; empty -> []."""
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return []
    if isinstance(value, (int, float, np.number)):
        if value != int(value):
            raise ValueError(value)
        value = int(value)
    return _category_list(str(value).replace("|", ","))


@dataclass(frozen=True)
class _Table:
    """One validated file: its rows as arrays (before users and items are re-indexed)."""

    users: np.ndarray
    items: np.ndarray
    timestamp: np.ndarray
    signals: np.ndarray
    random: np.ndarray
    session: np.ndarray | None
    position: np.ndarray | None
    category: np.ndarray | None
    creator: np.ndarray | None
    duration: np.ndarray | None


def _table(path: Path, frame: pd.DataFrame, parquet: bool, random: bool | None = None) -> _Table:
    """Validate a generic-schema frame (column names already mapped) into a :class:`_Table`."""
    _require(path, frame, ("user_id", "item_id", "timestamp", "watch_ratio"))
    users, items = _ids(path, frame, "user_id", parquet), _ids(path, frame, "item_id", parquet)
    timestamp = _numbers(path, frame, "timestamp", parquet, allow_missing=True, low=-np.inf)
    signals = np.zeros((len(frame), len(SIGNALS)), np.float32)
    for j, name in enumerate(SIGNALS):
        if name in frame.columns:
            signals[:, j] = _numbers(path, frame, name, parquet, allow_missing=False, binary=name in BINARY_SIGNALS)
    if "click" not in frame.columns:
        signals[:, 0] = signals[:, 1] > 0
    watch = signals[:, 1]
    if (watch[signals[:, 0] == 0] > 0).any():
        index = int(np.argmax((signals[:, 0] == 0) & (watch > 0)))
        raise DataFileError(f"{_where(path, index, parquet)}, column 'watch_ratio': a watch ratio > 0 on a row with "
                            "click 0 (the generic schema logs no watching without a click)")
    if random is None:
        flags = (_numbers(path, frame, "is_random", parquet, allow_missing=False, binary=True) if "is_random" in frame
                 else np.zeros(len(frame)))
        random_rows = flags == 1
    else:
        random_rows = np.full(len(frame), random)
    category = None
    if "category" in frame.columns:
        codes, uniques = pd.factorize(frame["category"], use_na_sentinel=False)
        lists = []
        for k, text in enumerate(uniques):
            try:
                lists.append(_label_list(text))
            except (ValueError, TypeError):
                index = int(np.argmax(codes == k))
                raise DataFileError(f"{_where(path, index, parquet)}, column 'category': expected category ids in "
                                    f"[0, {MAX_CATEGORY_ID}] like 3|7, got {text!r}") from None
        category = np.array(lists + [[]], dtype=object)[:-1][codes]
    optional = {name: (_numbers(path, frame, name, parquet, allow_missing=name == "duration")
                       if name in ("position", "duration") else _ids(path, frame, name, parquet))
                if name in frame.columns else None for name in ("session_id", "position", "creator", "duration")}
    return _Table(users, items, timestamp, signals, random_rows, optional["session_id"], optional["position"],
                  category, optional["creator"], optional["duration"])


def _sessions(user: np.ndarray, timestamp: np.ndarray, given: np.ndarray | None, given_position: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray]:
    """((N,) session index, -1 for rows without time and session; (N,) position in the session, in the
    order of the given positions, else of time)."""
    n = user.size
    session = np.full(n, -1, np.int64)
    if given is not None:
        keys = pd.factorize(given)[0]
        order = np.lexsort((timestamp, given_position if given_position is not None else timestamp, keys))
        new = np.r_[True, keys[order[1:]] != keys[order[:-1]]]
    else:
        rows = np.flatnonzero(~np.isnan(timestamp))
        order = rows[np.lexsort((timestamp[rows], user[rows]))]
        new = np.r_[True, (user[order[1:]] != user[order[:-1]]) | (np.diff(timestamp[order]) > SESSION_GAP_S)]
    if not order.size:  # no row with a time: no sessions
        return session, np.zeros(n, np.int64)
    index = np.cumsum(new) - 1
    session[order] = index
    starts = np.flatnonzero(new)
    position = np.zeros(n, np.int64)
    position[order] = np.arange(order.size) - starts[index]
    return session, position


def _assemble(source: str, tables: list[_Table], logged: tuple[str, ...]) -> Log:
    """One :class:`Log` from validated tables (item attributes from each item's first row)."""
    cat = {name: np.concatenate([getattr(t, name) for t in tables]) for name in
           ("users", "items", "timestamp", "signals", "random")}
    user, user_ids = pd.factorize(cat["users"], sort=True)
    item, item_ids = pd.factorize(cat["items"], sort=True)
    user, item, item_ids = user.astype(np.int64), item.astype(np.int64), np.asarray(item_ids)
    given = [t.session for t in tables]
    session_given = np.concatenate(given) if all(g is not None for g in given) else None
    positions = [t.position for t in tables]
    position_given = np.concatenate(positions) if all(p is not None for p in positions) else None
    session, position = _sessions(user, cat["timestamp"], session_given, position_given)
    first = np.zeros(item_ids.size, np.int64)
    first[item[::-1]] = np.arange(item.size)[::-1]  # the first row of each item
    n_items = item_ids.size
    rows_cats = [t.category for t in tables]
    if all(c is not None for c in rows_cats):
        labels = np.concatenate(rows_cats)[first]
        width = 1 + max((max(ls) for ls in labels if ls), default=0)
        item_cats = np.zeros((n_items, width), bool)
        rows = np.repeat(np.arange(n_items), [len(ls) for ls in labels])
        item_cats[rows, np.fromiter((c for ls in labels for c in ls), np.int64, count=rows.size)] = True
    else:
        item_cats = np.zeros((n_items, 1), bool)
    creators = [t.creator for t in tables]
    item_creator = (pd.factorize(np.concatenate(creators)[first])[0].astype(np.int64)
                    if all(c is not None for c in creators) else np.arange(n_items, dtype=np.int64))
    durations = [t.duration for t in tables]
    duration = (np.concatenate(durations)[first].astype(np.float32) if all(d is not None for d in durations)
                else np.full(n_items, np.nan, np.float32))
    return Log(source, user, item, cat["timestamp"], session, position, cat["signals"], logged, cat["random"],
               np.asarray(user_ids), item_ids, item_cats, item_creator, duration)


def read_generic(path: str | Path) -> Log:
    """A generic-schema log (CSV, CSV.gz or Parquet)."""
    path = Path(path)
    frame, parquet = _read_frame(path)
    logged = tuple(name for name in SIGNALS if name in frame.columns or name == "click")
    return _assemble(str(path), [_table(path, frame, parquet)], logged)


def read_kuairec(folder: str | Path) -> Log:
    """KuaiRec's ``big_matrix.csv`` (standard exposure) and/or ``small_matrix.csv`` (fully observed:
    random exposure) with ``item_categories.csv``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFileError(f"{folder}: not a directory (a KuaiRec data folder)")
    names = [name for name in ("big_matrix.csv", "small_matrix.csv") if (folder / name).is_file()]
    if not names:
        raise DataFileError(f"{folder}: neither big_matrix.csv nor small_matrix.csv found")
    rename = {"video_id": "item_id"}
    tables = []
    for name in names:
        path = folder / name
        frame, _ = _read_frame(path, ("user_id", "video_id", "timestamp", "watch_ratio", "video_duration"))
        frame = frame.rename(columns=rename)
        if "video_duration" in frame.columns:
            frame["duration"] = pd.to_numeric(frame.pop("video_duration"), errors="coerce") / 1000.0
        tables.append(_table(path, frame, False, random=name == "small_matrix.csv"))
    log = _assemble(str(folder), tables, ("click", "watch_ratio"))
    categories_path = folder / ITEM_CATEGORIES
    cats = _read_categories(categories_path, _read_bytes(categories_path), log.item_ids.astype(np.int64),
                            folder / names[0])
    return replace(log, item_cats=cats)


#: KuaiRand's log columns -> the generic schema's.
KUAIRAND_COLUMNS = {"video_id": "item_id", "is_click": "click", "long_view": "long_view", "is_like": "like",
                    "is_follow": "follow", "is_comment": "comment", "is_forward": "forward", "is_hate": "hate"}


def read_kuairand(folder: str | Path) -> Log:
    """KuaiRand's ``log_standard*.csv`` / ``log_random*.csv`` with ``video_features_basic_pure.csv``
    (and ``user_features_pure.csv`` when present)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFileError(f"{folder}: not a directory (a KuaiRand data folder)")
    paths = sorted(folder.glob("log_standard*.csv")) + sorted(folder.glob("log_random*.csv"))
    if not paths:
        raise DataFileError(f"{folder}: no log_standard*.csv or log_random*.csv found")
    wanted = ("user_id", "time_ms", "play_time_ms", "duration_ms", "is_rand", *KUAIRAND_COLUMNS)
    tables = []
    for path in paths:
        frame, _ = _read_frame(path, wanted)
        _require(path, frame, ("user_id", "video_id", "time_ms", "is_click", "play_time_ms", "duration_ms"))
        play = _numbers(path, frame, "play_time_ms", False, allow_missing=False)
        duration = _numbers(path, frame, "duration_ms", False, allow_missing=True)
        frame = frame.rename(columns=KUAIRAND_COLUMNS)
        frame["timestamp"] = pd.to_numeric(frame.pop("time_ms"), errors="coerce") / 1000.0
        clicked = frame["click"].to_numpy() == 1
        with np.errstate(invalid="ignore", divide="ignore"):
            frame["watch_ratio"] = np.where(clicked & (duration > 0), play / duration, 0.0)
        frame["duration"] = duration / 1000.0
        is_random = path.name.startswith("log_random")
        tables.append(_table(path, frame.drop(columns=["is_rand"], errors="ignore"), False, random=is_random))
    items = read_kuairand_items(folder / "video_features_basic_pure.csv")
    log = _assemble(str(folder), tables, SIGNALS)
    known = log.item_ids.astype(np.int64)
    if known.max() >= items.tags.shape[0]:
        raise DataFileError(f"{folder / 'video_features_basic_pure.csv'}: no row for video_id {int(known.max())} "
                            "of the logs")
    users_path = folder / "user_features_pure.csv"
    features = read_kuairand_users(users_path).features if users_path.is_file() else None
    return replace(log, item_cats=items.tags[known], item_creator=pd.factorize(items.creator[known])[0].astype(np.int64),
                   item_duration=items.duration_s[known],
                   user_features=None if features is None else features[log.user_ids.astype(np.int64)])


def read_log(data: str | Path, log_format: str = "csv") -> Log:
    """The log at ``data`` in ``log_format`` (:data:`FORMATS`)."""
    if log_format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {log_format!r}")
    return {"csv": read_generic, "kuairec": read_kuairec, "kuairand": read_kuairand}[log_format](data)
