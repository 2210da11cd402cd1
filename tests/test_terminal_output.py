"""What a user sees in a terminal: result tables fit 80 columns, training progress bars end at 100%."""

from __future__ import annotations

import re

import pytest

import recgym
from recgym.agents import AGENTS
from recgym.agents.flat import train
from recgym.cli import TERMINAL_WIDTH, main, print_table
from recgym.evaluation import METRICS


def table_cells(text: str) -> list[str]:
    """The stripped cell texts of every table row printed by rich."""
    return [cell.strip() for line in text.splitlines() for cell in re.split(r"[│┃]", line)[1:-1]]


def test_eval_table_fits_an_80_column_terminal(capsys):
    assert main(["eval", "--env", "recgym/Synthetic-v0", "--policy", "random", "--episodes", "8"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= TERMINAL_WIDTH == 80, out
    cells = table_cells(out)
    assert set(METRICS) <= set(cells)  # every metric has a column, none cut short
    assert "…" not in out
    values = [cell for cell in cells if re.fullmatch(r"-?\d+\.\d{3}( ±\d+\.\d{2})?", cell)]
    assert len(values) == len(METRICS)


def test_a_table_of_every_agent_fits_and_keeps_every_value(capsys):
    """The widest table ``recgym compare`` can print: every registered agent, all metrics with CIs."""
    result = recgym.evaluate("random", "recgym/Synthetic-v0", episodes=8, seed=0)
    print_table({name: result for name in AGENTS}, title="every agent")
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 80, out
    cells = table_cells(out)
    assert sum(cell in AGENTS for cell in cells) == len(AGENTS) * out.count("┃ policy")
    r_cum = f"{result.summary['R_cum']:.3f} ±{result.ci95['R_cum']:.2f}"
    assert cells.count(r_cum) == len(AGENTS)  # no value wrapped or truncated


@pytest.mark.parametrize(("algo", "hyperparams", "steps_run"), [
    ("ppo", {"n_steps": 4, "batch_size": 32}, 64),       # rollouts of 4 x 8 sessions: 50 -> 64
    ("dqn", {"train_freq": 3, "learning_starts": 0}, 72),  # rollouts of 3 x 8 sessions: 50 -> 72
])
def test_training_progress_bar_ends_at_exactly_100_percent(tmp_path, capfd, algo, hyperparams, steps_run):
    """SB3's own bar ends at "64/50"; recgym's total is the steps SB3 really runs (whole rollouts)."""
    model, _ = train(algo, "recgym/Synthetic-v0", 50, num_envs=8, progress_bar=True, logdir=tmp_path, **hyperparams)
    out = capfd.readouterr().out
    done, total = map(int, re.findall(r"(\d+)/(\d+)", out)[-1])
    assert done == total == model.num_timesteps == steps_run, out[-300:]
    assert re.search(r"\b100%", out)


def test_the_cli_does_not_repeat_gymnasiums_out_of_date_notice_for_v0(capsys):
    """v0 stays registered on purpose; with v1 registered gymnasium warns on every v0 env built."""
    import warnings

    import gymnasium as gym

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym.make("recgym/Synthetic-v0")
    assert any("out of date" in str(w.message) for w in caught)  # the library keeps gymnasium's notice
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", "--env", "recgym/Synthetic-v0", "--policy", "random", "--episodes", "2"]) == 0
    assert not [w for w in caught if "out of date" in str(w.message)]
