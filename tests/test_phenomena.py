"""``recgym phenomena`` on the kernels: every row measured, the controls exact where the design says
they are, the JSON shape of the issue, and the definitions listed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recgym.cli import main
from recgym.phenomena import ROWS, gini, measure


@pytest.fixture(scope="module")
def rows():
    # 5 population seeds: loop_gini_rise's Student-t interval over 2 (t = 12.7) straddled 0 on Synthetic-v1
    # once the novelty / cycle terms (issue #17) spread the seeds (0.0048, 0.0063; 3 seeds: [0.0008, 0.0087]);
    # over 3 too once the acquired tastes' valley lowered the rise (0.0042, 0.0004, 0.0026, 0.0056, 0.0052:
    # the true-greedy oracle now favours the popular items as well)
    return measure("recgym/Synthetic-v1", n_users=60, loop_seeds=5, state_users=200)


def test_every_row_is_measured_with_intervals(rows):
    assert list(rows) == list(ROWS)
    for name, row in rows.items():
        lo, hi = row["ci95"]
        assert lo <= row["default"] <= hi, name


def test_the_pulls_create_the_biases_and_their_controls_remove_them(rows):
    regret, familiarity, loop = rows["logged_oracle_regret"], rows["familiarity_logged_bias"], rows["loop_gini_rise"]
    # Control ~0, no longer exactly 0 since the novelty / cycle terms (issue #17) reach states where every
    # allowed item has a satisfaction ~0.1 or less: there the expected logged reward, click x (watch - 3 hate
    # ...), is negative and rises as satisfaction falls (the hate), so the two argmaxes can differ.
    assert regret["ci95"][0] > 0.03 and 0 <= regret["control"] < 1e-3
    assert familiarity["ci95"][0] > 0.1 and familiarity["control"] == 0.0
    assert loop["ci95"][0] > 0 and abs(loop["control"]) < 1e-3  # near-identical argmaxes (see the regret's)
    tail = rows["long_tail_oracle_loss"]
    assert tail["ci95"][0] > 0.08 and tail["control"] < tail["default"] / 2
    assert rows["nonpersonalised_share"]["control"] is None and 0.3 < rows["nonpersonalised_share"]["default"] < 0.9


def test_gini():
    assert gini(np.ones(10)) == pytest.approx(0.0)
    assert gini(np.r_[np.zeros(9), 1.0]) == pytest.approx(0.9)


def test_cli_json_and_list(capsys):
    assert main(["phenomena", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ROWS) and "goal: >= 0.10; control <= 0.01" in listed
    assert main(["phenomena", "--env", "recgym/Synthetic-v1", "--json", "--users", "20", "--state-users", "40",
                 "--loop-seeds", "2", "--world-option", "followed_creators=4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == list(ROWS)
    assert all({"default", "control", "ci95"} <= set(row) and len(row["ci95"]) == 2 for row in out.values())


def test_cli_refuses_v0_ids(capsys):
    assert main(["phenomena", "--env", "recgym/KuaiRec-v0"]) == 2
    assert "phenomena are measured on the v1 ids" in capsys.readouterr().err
