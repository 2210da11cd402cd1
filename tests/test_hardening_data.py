"""The real-data path (``data_dir``): bad KuaiRec files are one-line errors naming file, line,
column and valid range; duplicates follow the documented policy; loads are cached by content."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import recgym  # noqa: F401
import recgym.world
from recgym.loaders import (
    MAX_CATEGORY_ID,
    DataFileError,
    KuaiRecFolder,
    cache_dir,
    load_kuairec_matrix,
    write_synthetic_kuairec,
)
from recgym.bench import data_main
from recgym.world import kuairec_matrix_world, top_singular_factors

HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"
WORLD_ARRAYS = ("item_emb", "item_cats", "item_creator", "item_age", "item_hour", "pop_prior", "user_interest",
                "user_novelty", "reward_matrix", "user_ids", "item_ids")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Each test gets its own empty cache folder."""
    monkeypatch.setenv("RECGYM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def row(user, video, ratio) -> str:
    return f"{user},{video},1,1,2020-07-05 05:27:48.378,20200705.0,1593898068.378,{ratio}"


def write_folder(directory: Path, rows: list[str], feats: dict[int, str], big_rows: list[str] | None = None) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "small_matrix.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    (directory / "item_categories.csv").write_text(
        "video_id,feat\n" + "".join(f'{video},"{feat}"\n' for video, feat in feats.items()))
    if big_rows is not None:
        (directory / "big_matrix.csv").write_text("\n".join([HEADER, *big_rows]) + "\n")
    return directory


def good_rows() -> list[str]:
    return [row(14, 100, 0.5), row(14, 205, 1.5), row(14, 310, 7.0),
            row(21, 100, 2.0), row(21, 205, 0.1), row(21, 310, 0.9)]


FEATS = {100: "[1]", 205: "[2, 3]", 310: "[1]"}


def assert_one_line_error(data_dir: Path, message: str, cache: Path) -> None:
    with pytest.raises(DataFileError, match=message) as error:
        gym.make("recgym/KuaiRec-v0", data_dir=data_dir)
    assert "\n" not in str(error.value)
    assert not cache.exists() or not any(cache.iterdir())  # nothing cached, nothing half-written


@pytest.mark.parametrize(
    "line, message",
    [
        (row(21, 205, -0.5), r"small_matrix.csv: line 6, column 'watch_ratio': expected a finite number >= 0, got '-0.5'"),
        (row(21, 205, "nan"), r"line 6, column 'watch_ratio': expected a finite number >= 0, got 'nan'"),
        (row(21, 205, "inf"), r"line 6, column 'watch_ratio': expected a finite number >= 0, got 'inf'"),
        (row(21, 205, ""), r"line 6, column 'watch_ratio': expected a finite number >= 0, got ''"),
        (row(21, 205, "0.1x"), r"line 6, column 'watch_ratio': expected a finite number >= 0, got '0.1x'"),
        (row(21, 205, '"0.1'), r"line 6, column 'watch_ratio': expected a finite number >= 0, got '\"0.1'"),
        (row("u21", 205, 0.1), r"line 6, column 'user_id': expected a non-negative integer id, got 'u21'"),
        (row(-21, 205, 0.1), r"line 6, column 'user_id': expected a non-negative integer id, got '-21'"),
        (row(21, 20.5, 0.1), r"line 6, column 'video_id': expected a non-negative integer id, got '20.5'"),
        (row(21, 205, 0.1) + ",9", r"small_matrix.csv: line 6: expected 8 fields, got 9"),
        ("21,205,1,1,20200705.0,1593898068.378,0.1", r"small_matrix.csv: line 6: expected 8 fields, got 7"),
        (row(21, 205, 0.1).replace(",1593", ",\r1593"), r"small_matrix.csv: line 6: a carriage return inside a line"),
    ],
)
def test_malformed_small_matrix_rows_name_line_column_and_range(tmp_path, cache, line, message):
    rows = good_rows()
    rows[4] = line  # line 6 of the file (header, then rows)
    assert_one_line_error(write_folder(tmp_path / "data", rows, FEATS), message, cache)


def test_line_numbers_count_skipped_blank_lines(tmp_path, cache):
    rows = good_rows()
    rows[1:1] = ["", "   "]  # blank lines are skipped, as pandas and csv do, but still counted
    rows[6] = row(21, 205, -1)
    assert_one_line_error(write_folder(tmp_path / "data", rows, FEATS), r"line 8, column 'watch_ratio'", cache)


@pytest.mark.parametrize(
    "feats, message",
    [
        ({**FEATS, 205: "[2, -3]"}, r"item_categories.csv: line 3, column 'feat': expected a list of category ids "
                                    rf"in \[0, {MAX_CATEGORY_ID}\] like \[8, 27\], got '\[2, -3\]'"),
        ({**FEATS, 205: "[1000000000]"}, rf"line 3, column 'feat': expected a list of category ids in \[0, {MAX_CATEGORY_ID}\]"),
        ({**FEATS, 205: "[2, x]"}, r"line 3, column 'feat': expected a list of category ids"),
    ],
)
def test_bad_category_ids_are_refused_before_allocating(tmp_path, cache, feats, message):
    started = time.perf_counter()
    assert_one_line_error(write_folder(tmp_path / "data", good_rows(), feats), message, cache)
    assert time.perf_counter() - started < 5  # [1000000000] used to ask for a 112 GiB label matrix


def test_unterminated_quote_in_item_categories_names_its_line(tmp_path, cache):
    data_dir = write_folder(tmp_path / "data", good_rows(), FEATS)
    (data_dir / "item_categories.csv").write_text('video_id,feat\n100,"[1]"\n205,"[2, 3]\n310,"[1]"\n')
    assert_one_line_error(data_dir, r"item_categories.csv: line 3: malformed CSV \(.*\); is a quote left open\?", cache)


def test_non_utf8_item_categories_name_the_line(tmp_path, cache):
    data_dir = write_folder(tmp_path / "data", good_rows(), FEATS)
    (data_dir / "item_categories.csv").write_bytes(b'video_id,feat\n100,"[1]"\n205,"[2\xff]"\n310,"[1]"\n')
    assert_one_line_error(data_dir, r"item_categories.csv: line 3: not UTF-8 text", cache)


@pytest.mark.parametrize(
    "small, message",
    [
        ("user_id,video_id,watch\n14,100,0.5\n",
         r"small_matrix.csv: line 1: missing column\(s\) \['watch_ratio'\]; header is \['user_id', 'video_id', 'watch'\]"),
        ("", r"small_matrix.csv: line 1: missing column\(s\) \['user_id', 'video_id', 'watch_ratio'\]"),
        (HEADER + "\n", r"small_matrix.csv: no data rows after the header"),
        (HEADER.replace("play_duration", "user_id") + "\n" + row(14, 100, 0.5),
         r"small_matrix.csv: line 1: column\(s\) \['user_id'\] appear more than once"),
        ("x" * 10_000, r"small_matrix.csv: line 1: missing column\(s\) .*; header is \['x{198}\.\.\.$"),
    ],
)
def test_missing_columns_and_empty_matrix_are_named(tmp_path, cache, small, message):
    data_dir = write_folder(tmp_path / "data", good_rows(), FEATS)
    (data_dir / "small_matrix.csv").write_text(small)
    assert_one_line_error(data_dir, message, cache)


def test_missing_files_and_items_without_categories_are_named(tmp_path, cache):
    data_dir = write_folder(tmp_path / "data", good_rows(), {100: "[1]", 310: "[1]"})
    assert_one_line_error(data_dir, r"item_categories.csv: no 'feat' row for video_id\(s\) \[205\] used in small_matrix.csv",
                          cache)
    (data_dir / "item_categories.csv").unlink()
    assert_one_line_error(data_dir, r"item_categories.csv: file not found", cache)


def test_a_matrix_too_large_to_hold_densely_is_refused_with_its_size(tmp_path, cache):
    rows = [row(u, u, 1.0) for u in range(33_000)]  # 33,000 users x 33,000 items: 4.1 GiB dense
    data_dir = write_folder(tmp_path / "data", rows, {})
    assert_one_line_error(data_dir, r"33000 users x 33000 items need a 4.1 GiB dense reward matrix \(limit 4 GiB\)",
                          cache)


def test_duplicate_rows_keep_the_last_and_count_once_in_popularity(tmp_path):
    rows = good_rows() + [row(14, 100, 0.9), row(14, 100, 3.0), row(21, 100, 0.2)]
    matrix = load_kuairec_matrix(KuaiRecFolder.read(write_folder(tmp_path / "data", rows, FEATS)))
    assert matrix.rewards[:, 0].tolist() == pytest.approx([3.0, 0.2])  # the last row of each (user, video)
    # positives (>= 0.6) among the kept rows: video 100 only user 14 (user 21's last is 0.2), 205 user 14,
    # 310 both users; counted twice, video 100 would read 3
    assert matrix.popularity.tolist() == [1.0, 1.0, 2.0]


def test_big_matrix_popularity_counts_each_user_item_pair_once(tmp_path):
    big = [row(14, 100, 0.9), row(14, 100, 0.9), row(7, 100, 1.0), row(7, 205, 0.8), row(7, 205, 0.1),
           row(9, 999, 1.0)]  # video 999 is not in the small matrix: ignored
    matrix = load_kuairec_matrix(KuaiRecFolder.read(write_folder(tmp_path / "data", good_rows(), FEATS, big)))
    assert matrix.popularity.tolist() == [2.0, 0.0, 0.0]


def test_duplicate_category_rows_keep_the_last(tmp_path):
    data_dir = write_folder(tmp_path / "data", good_rows(), FEATS)
    with (data_dir / "item_categories.csv").open("a") as handle:
        handle.write('205,"[0]"\n')
    matrix = load_kuairec_matrix(KuaiRecFolder.read(data_dir))
    # video 205's earlier "[2, 3]" is dropped, so the largest kept category id, and C, is 1
    assert matrix.categories.tolist() == [[False, True], [True, False], [False, True]]


def test_world_keeps_the_files_original_ids(tmp_path):
    world = gym.make("recgym/KuaiRec-v0", data_dir=write_folder(tmp_path / "data", good_rows(), FEATS)).unwrapped.world
    assert world.user_ids.tolist() == [14, 21] and world.item_ids.tolist() == [100, 205, 310]
    assert world.reward_matrix[list(world.user_ids).index(21), list(world.item_ids).index(310)] == pytest.approx(0.9)


def test_crlf_files_load_like_lf_files(tmp_path):
    lf = kuairec_matrix_world(write_folder(tmp_path / "lf", good_rows(), FEATS))
    crlf_dir = write_folder(tmp_path / "crlf", good_rows(), FEATS)
    for name in ("small_matrix.csv", "item_categories.csv"):
        path = crlf_dir / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    crlf = kuairec_matrix_world(crlf_dir)
    for name in WORLD_ARRAYS:
        assert np.array_equal(getattr(lf, name), getattr(crlf, name)), name


def test_a_user_who_watched_nothing_gets_a_finite_embedding(tmp_path):
    rows = good_rows() + [row(30, 100, 0.0), row(30, 205, 0.0), row(30, 310, 0.0)]
    world = kuairec_matrix_world(write_folder(tmp_path / "data", rows, FEATS))
    assert np.isfinite(world.user_interest).all() and np.isfinite(world.item_emb).all()  # NaN before
    assert not world.user_interest[2].any()


def test_generated_kuairec_loads_cold_then_cached_bit_identically(tmp_path, cache, monkeypatch):
    data_dir = write_synthetic_kuairec(tmp_path / "data", n_users=90, n_items=120, n_videos=200, seed=3)
    cold = gym.make("recgym/KuaiRec-v0", data_dir=data_dir).unwrapped.world
    assert (cold.n_users, cold.n_items, cold.n_categories, cold.embed_dim) == (90, 120, 31, 32)
    assert cold.user_ids.tolist() == list(range(14, 14 + 5 * 90, 5))
    cached_files = sorted(cache.iterdir())
    assert [path.suffix for path in cached_files] == [".npz"]  # one entry, no temporary left behind

    def parse_again(folder):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(recgym.world, "load_kuairec_matrix", parse_again)
    cached = gym.make("recgym/KuaiRec-v0", data_dir=data_dir).unwrapped.world
    for name in WORLD_ARRAYS:
        cold_array, cached_array = getattr(cold, name), getattr(cached, name)
        assert cold_array.dtype == cached_array.dtype and cold_array.tobytes() == cached_array.tobytes(), name
    assert cold.fingerprint == cached.fingerprint
    env_cold, env_cached = (gym.make("recgym/KuaiRec-v0", data_dir=data_dir) for _ in range(2))
    trajectories = []
    for env in (env_cold, env_cached):
        env.reset(seed=7)
        trajectories.append([env.step(item)[1] for item in (3, 50, 99, 3)])
    assert trajectories[0] == trajectories[1]


def test_data_benchmark_times_cold_and_cached_loads_of_a_generated_folder(tmp_path, capsys):
    assert data_main(["--data-dir", str(tmp_path / "data"), "--users", "70", "--items", "90",
                      "--cached-rounds", "2"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (result["users"], result["items"], result["generated"], result["cached_identical"]) == (70, 90, True, True)
    assert len(result["cache_entries"]) == 1 and result["cached_s"] < result["cold_s"]
    assert data_main(["--data-dir", str(tmp_path / "data"), "--users", "70", "--items", "90"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["generated"] is False  # the folder is reused


def test_the_cache_key_is_the_content_not_the_file_date(tmp_path, cache):
    data_dir = write_folder(tmp_path / "data", good_rows(), FEATS)
    first = kuairec_matrix_world(data_dir)
    small = data_dir / "small_matrix.csv"
    stat = small.stat()
    small.write_text(small.read_text().replace(",0.9\n", ",0.8\n"))  # same size and, below, same mtime
    os.utime(small, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = kuairec_matrix_world(data_dir)
    assert first.reward_matrix[1, 2] == pytest.approx(0.9) and second.reward_matrix[1, 2] == pytest.approx(0.8)
    assert len(list(cache.iterdir())) == 2


def test_a_corrupt_cache_entry_is_rebuilt(tmp_path, cache):
    data_dir = write_folder(tmp_path / "data", good_rows(), FEATS)
    first = kuairec_matrix_world(data_dir)
    (entry,) = cache.iterdir()
    entry.write_bytes(entry.read_bytes()[:100])  # truncated, as by a crash of another writer
    again = kuairec_matrix_world(data_dir)
    assert np.array_equal(first.reward_matrix, again.reward_matrix)
    assert entry.stat().st_size > 100  # rewritten whole


def test_an_unwritable_cache_warns_and_still_loads(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("RECGYM_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="could not write the cache"):
        world = kuairec_matrix_world(write_folder(tmp_path / "data", good_rows(), FEATS))
    assert world.n_users == 2


def test_a_failed_cache_write_leaves_nothing_behind(tmp_path, cache, monkeypatch):
    def disk_full(file, **arrays):
        file.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.warns(UserWarning, match="No space left on device"):
        kuairec_matrix_world(write_folder(tmp_path / "data", good_rows(), FEATS))
    assert list(cache.iterdir()) == []


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RECGYM_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("RECGYM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "recgym"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "recgym"


def orthonormal_columns(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """Random orthonormal columns by whitening (LAPACK's QR and SVD crawl on a contended 2-core machine)."""
    draws = rng.standard_normal((rows, columns))
    eigenvalues, eigenvectors = np.linalg.eigh(draws.T @ draws)
    return draws @ eigenvectors / np.sqrt(eigenvalues)


def test_truncated_svd_matches_the_exact_one():
    rng = np.random.default_rng(0)
    left, right = orthonormal_columns(rng, 300, 80), orthonormal_columns(rng, 400, 80)
    singular = 100 * 0.85 ** np.arange(80)  # a decaying spectrum, as rating matrices have
    matrix = ((left * singular) @ right.T).astype(np.float32)  # its exact SVD is (left, singular, right)
    users, items = top_singular_factors(matrix, 32)  # 300 x 400: the randomized branch
    again = top_singular_factors(matrix, 32)
    assert users.tobytes() == again[0].tobytes() and items.tobytes() == again[1].tobytes()  # deterministic

    signs = np.sign(right[np.abs(right[:, :32]).argmax(axis=0), np.arange(32)])
    scale = np.sqrt(singular[:32]) * signs
    expected_users, expected_items = left[:, :32] * scale, right[:, :32] * scale
    expected_users /= np.linalg.norm(expected_users, axis=1, keepdims=True)
    expected_items /= np.linalg.norm(expected_items, axis=1, keepdims=True)
    assert np.abs(users - expected_users).max() < 1e-4
    assert np.abs(items - expected_items).max() < 1e-4


def test_truncated_svd_of_a_rank_deficient_matrix_is_finite():
    rng = np.random.default_rng(1)
    matrix = (rng.random((120, 3)) @ rng.random((3, 150))).astype(np.float32)  # rank 3 < 32 components
    users, items = top_singular_factors(matrix, 32)
    assert np.isfinite(users).all() and np.isfinite(items).all()
    np.testing.assert_allclose(np.linalg.norm(users, axis=1), 1.0, rtol=1e-5)
