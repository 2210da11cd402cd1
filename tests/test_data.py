"""Worlds built from real data files: the shipped KuaiRand-Pure items and a user's KuaiRec matrix."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import recgym  # noqa: F401
from conftest import MECHANISMS_OFF
from recgym.loaders import DataFileError, read_kuairand_items
from recgym.world import kuairand_world

HEADER = "video_id,author_id,upload_dt,tag\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_kuairand_world_uses_the_real_items_creators_and_tags():
    world = kuairand_world()
    assert (world.n_users, world.n_items) == (27285, 7583)
    assert world.n_creators == 6510  # distinct real author_id values
    assert world.n_categories == 46  # distinct tags present in KuaiRand-Pure's item file
    assert world.item_cats.sum(axis=1).max() == 3 and (world.item_cats.sum(axis=1) == 0).sum() == 96
    # video 0 is tag 39 by author 7349781, video 3 is tag 7: different tags, as in the file
    assert not (world.item_cats[0] & world.item_cats[3]).any()


def test_kuairand_reader_parses_multi_tag_rows(tmp_path):
    path = write(tmp_path / "items.csv", HEADER + '0,11,2022-04-10,"3,20"\n1,12,2022-04-09,3\n2,11,2022-04-10,\n')
    items = read_kuairand_items(path)
    assert items.tags.tolist() == [[True, True], [True, False], [False, False]]
    assert items.creator.tolist() == [0, 1, 0]
    assert items.age_days.tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "body, message",
    [
        ("0,11,2022-04-10,3\n1,x,2022-04-10,3\n", r"line 3, column 'author_id': expected an integer id, got 'x'"),
        ("0,11,10/04/2022,3\n", r"line 2, column 'upload_dt': expected a YYYY-MM-DD date"),
        ('0,11,2022-04-10,"3,a"\n', r"line 2, column 'tag': expected comma-separated integer tags"),
        ("0,11,2022-04-10\n", "line 2: expected 4 fields"),
        ("0,11,2022-04-10,3\n0,12,2022-04-10,3\n", "must hold each id 0..1 exactly once"),
    ],
)
def test_malformed_kuairand_rows_name_file_line_and_column(tmp_path, body, message):
    path = write(tmp_path / "items.csv", HEADER + body)
    with pytest.raises(DataFileError, match=message) as error:
        read_kuairand_items(path)
    assert str(path) in str(error.value)


def test_missing_file_and_missing_column_are_named(tmp_path):
    with pytest.raises(DataFileError, match="nope.csv: file not found"):
        read_kuairand_items(tmp_path / "nope.csv")
    path = write(tmp_path / "items.csv", "video_id,author_id,tag\n0,1,2\n")
    with pytest.raises(DataFileError, match=r"line 1: missing column\(s\) \['upload_dt'\]"):
        read_kuairand_items(path)


def kuairec_dir(tmp_path: Path, ratios: np.ndarray, feats: list[str]) -> Path:
    rows = ["user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"]
    users, videos = [14, 21], [100, 205, 310]
    for u, user in enumerate(users):
        for v, video in enumerate(videos):
            rows.append(f"{user},{video},1,1,t,20200705,0,{ratios[u, v]}")
    write(tmp_path / "small_matrix.csv", "\n".join(rows) + "\n")
    write(tmp_path / "item_categories.csv", "video_id,feat\n" + "".join(
        f'{video},"{feat}"\n' for video, feat in zip(videos, feats)))
    return tmp_path


def test_matrix_backed_kuairec_returns_the_matrix_rewards_under_dorl_protocol(tmp_path):
    ratios = np.array([[0.5, 1.5, 7.0], [2.0, 0.1, 0.9]])
    data_dir = kuairec_dir(tmp_path, ratios, ["[1]", "[2, 3]", "[1]"])
    env = gym.make("recgym/KuaiRec-v0", data_dir=data_dir, **{**MECHANISMS_OFF, "leave_window": 1})
    world = env.unwrapped.world
    assert (world.n_users, world.n_items, world.reward_max) == (2, 3, 5.0)
    env.reset(seed=0, options={"user_id": 1})
    rewards, ends = [], []
    for item in (0, 1, 2, 0):
        _, reward, terminated, _, _ = env.step(item)
        rewards.append(reward)
        ends.append(terminated)
        if terminated:
            break
    assert rewards == pytest.approx([2.0, 0.1, 0.9, 2.0])  # user 21's row, and the leaving step still pays
    assert ends == [False, False, False, True]  # window of 1: only the last item 0 follows an item sharing its label
    env.reset(options={"user_id": 0})
    _, reward, _, _, _ = env.step(2)
    assert reward == pytest.approx(5.0)


def test_malformed_kuairec_matrix_is_named(tmp_path):
    data_dir = kuairec_dir(tmp_path, np.array([[0.5, 1.5, 7.0], [2.0, 0.1, 0.9]]), ["[1]", "[2]", "[1]"])
    text = (data_dir / "small_matrix.csv").read_text().replace(",0.1\n", ",nan\n")
    write(data_dir / "small_matrix.csv", text)
    with pytest.raises(DataFileError, match=r"small_matrix.csv: line 6, column 'watch_ratio': expected a finite number"):
        gym.make("recgym/KuaiRec-v0", data_dir=data_dir)
    with pytest.raises(DataFileError, match="data_dir is not a directory"):
        gym.make("recgym/KuaiRec-v0", data_dir=tmp_path / "missing")
