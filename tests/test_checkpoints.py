"""Checkpoints carry their agent, env and world, and every bad checkpoint is a one-line error naming the
file: truncated, random bytes, another agent's, another world's, another catalogue size; from the
library (ValueError) and from the command line (``recgym: error: ...``, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import recgym
from recgym import cli
from recgym.agents import load_agent, train_agent
from recgym.agents.dsrm import DSRM, DSRMConfig
from recgym.agents.dsrm.cli import load_model as load_dsrm
from recgym.world import synthetic_world

SYN = "recgym/Synthetic-v0"


@pytest.fixture(scope="module")
def a2c_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logdir = tmp_path_factory.mktemp("runs")
    _, path = train_agent("a2c", SYN, 128, seed=0, logdir=logdir, num_envs=16, env_options={"max_turn": 20})
    return path


def damaged(path: Path, tmp_path: Path) -> dict[str, Path]:
    """A truncated copy of ``path`` and a file of random bytes with the same suffix."""
    truncated, noise = tmp_path / f"truncated{path.suffix}", tmp_path / f"noise{path.suffix}"
    data = path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    return {"truncated": truncated, "random bytes": noise}


def one_line(error: pytest.ExceptionInfo[ValueError], path: Path) -> str:
    text = str(error.value)
    assert "\n" not in text and str(path) in text, text
    return text


def test_every_checkpoint_stores_agent_env_and_world(a2c_checkpoint):
    from recgym.agents.checkpoints import FORMAT, read_sb3_meta

    world = synthetic_world()
    assert read_sb3_meta(a2c_checkpoint) == {"format": FORMAT, "agent": "a2c", "env_id": SYN,
                                             "env_options": {"max_turn": 20}, "world": world.fingerprint,
                                             "n_items": world.n_items}
    assert a2c_checkpoint.parent.name == "a2c_Synthetic-v0_s0_1"


def test_sb3_checkpoint_truncated_or_random_bytes(a2c_checkpoint, tmp_path):
    for name, path in damaged(a2c_checkpoint, tmp_path).items():
        with pytest.raises(ValueError) as error:
            load_agent("a2c", path)
        assert "not a readable SB3 checkpoint" in one_line(error, path), name


def test_another_agents_checkpoint_is_refused(a2c_checkpoint):
    for agent in ("ppo", "dorl", "ppo-novelty"):
        with pytest.raises(ValueError) as error:
            load_agent(agent, a2c_checkpoint)
        assert f"checkpoint is for agent 'a2c', not '{agent}'" in one_line(error, a2c_checkpoint)
    with pytest.raises(ValueError) as error:
        load_agent("dsrm-pretrain", a2c_checkpoint)  # a zip, but not a torch checkpoint
    assert "not a readable DSRM checkpoint" in one_line(error, a2c_checkpoint)
    with pytest.raises(ValueError) as error:
        load_agent("hrl4pfg", a2c_checkpoint)
    assert "is a run directory (holding meta.json), not a file" in one_line(error, a2c_checkpoint)


def test_another_world_of_the_same_size_is_refused_at_load_and_at_evaluation(a2c_checkpoint):
    other = synthetic_world(seed=1)
    assert other.n_items == synthetic_world().n_items  # the same catalogue size: only the fingerprint tells
    with pytest.raises(ValueError, match="was trained on world 'synthetic:200x500") as error:
        load_agent("a2c", a2c_checkpoint, world=other)
    one_line(error, a2c_checkpoint)
    with pytest.raises(ValueError, match="this a2c model was trained on world"):  # was silently scored
        recgym.evaluate(load_agent("a2c", a2c_checkpoint), SYN, episodes=4, world_options={"seed": 1})


def test_another_catalogue_size_is_refused(a2c_checkpoint):
    with pytest.raises(ValueError, match=r"\(catalogue of 500 items\), not on this env's world .* \(50 items\)") as error:
        load_agent("a2c", a2c_checkpoint, world=synthetic_world(n_items=50))
    one_line(error, a2c_checkpoint)
    with pytest.raises(ValueError, match=r"\(3327 items\)"):
        recgym.evaluate(load_agent("a2c", a2c_checkpoint), "recgym/KuaiRec-v0", episodes=2)


def test_cli_reports_each_bad_checkpoint_in_one_line(a2c_checkpoint, tmp_path, capsys):
    bad = damaged(a2c_checkpoint, tmp_path)
    cases = [
        (["--policy", "a2c", "--checkpoint", str(bad["truncated"])], "not a readable SB3 checkpoint"),
        (["--policy", "a2c", "--checkpoint", str(bad["random bytes"])], "not a readable SB3 checkpoint"),
        (["--policy", "ppo", "--checkpoint", str(a2c_checkpoint)], "checkpoint is for agent 'a2c', not 'ppo'"),
        (["--policy", "a2c", "--checkpoint", str(a2c_checkpoint), "--env", "recgym/KuaiRec-v0"],
         "(catalogue of 500 items), not on this env's world 'kuairec:1411x3327"),
        (["--policy", "a2c", "--checkpoint", str(tmp_path / "missing.zip")], "missing.zip' not found"),
    ]
    for argv, expected in cases:
        capsys.readouterr()
        assert cli.main(["eval", "--env", SYN, "--episodes", "2", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("recgym: error: ") and err.count("\n") == 1 and expected in err, err
    assert cli.main(["eval", "--env", SYN, "--episodes", "2", "--policy", "a2c", "--checkpoint", str(a2c_checkpoint),
                     "--option", "max_turn=20", "--json"]) == 0


def test_dsrm_checkpoints(tmp_path):
    world = synthetic_world()
    model = DSRM(DSRMConfig(embed_dim=world.embed_dim, history_len=10), world.fingerprint, world.n_items)
    bare = model.save(tmp_path / "bare.pt")  # a DSRM file, but not saved as the dsrm-pretrain agent
    with pytest.raises(ValueError) as error:
        load_dsrm(bare)
    assert "not a recgym checkpoint" in one_line(error, bare)
    for name, path in damaged(bare, tmp_path).items():
        with pytest.raises(ValueError) as error:
            DSRM.load(path)
        assert "not a readable DSRM checkpoint" in one_line(error, path), name
    # random bytes fail inside torch's unpickler in several ways (UnpicklingError, IndexError,
    # UnicodeDecodeError, KeyError); 400 seeded files meet each of them, and each is the same refusal
    noise = tmp_path / "noise.pt"
    for seed in range(400):
        noise.write_bytes(np.random.default_rng(seed).bytes(4096))
        with pytest.raises(ValueError) as error:
            DSRM.load(noise)
        assert "not a readable DSRM checkpoint" in one_line(error, noise), seed
    with pytest.raises(ValueError, match=r"\(catalogue of 500 items\)") as error:
        DSRM.load(bare, world=synthetic_world(n_items=50))
    one_line(error, bare)


def test_hierarchical_checkpoint_directories(tmp_path):
    from recgym.agents.checkpoints import FORMAT

    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ValueError, match="not a recgym hierarchical checkpoint"):
        load_agent("hrl4pfg", run)
    (run / "meta.json").write_text('{"format": "recgym-checkpoint/1", "agent": "hrl4pfg", "wor')  # torn write
    with pytest.raises(ValueError) as error:
        load_agent("hrl4pfg", run)
    assert "unreadable checkpoint metadata" in one_line(error, run)
    world = synthetic_world()
    meta = {"format": FORMAT, "agent": "novelty-hrl", "env_id": SYN, "env_options": {}, "world": world.fingerprint,
            "n_items": world.n_items, "rounds_done": 1, "config": {}}
    (run / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="checkpoint is for agent 'novelty-hrl', not 'hrl4pfg'"):
        load_agent("hrl4pfg", run)
    with pytest.raises(ValueError, match="was trained on world"):
        load_agent("novelty-hrl", run, world=synthetic_world(seed=1))
    with pytest.raises(ValueError) as error:  # metadata fine, the models missing
        load_agent("novelty-hrl", run)
    assert "unreadable hierarchical checkpoint" in one_line(error, run)
