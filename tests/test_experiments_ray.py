"""The Ray Tune backend of experiment grids gives the same table as the local backend."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")

from recgym.experiments import run_experiment  # noqa: E402

CONFIG = """
methods: [random, popular]
envs: [recgym/Synthetic-v0]
options: {max_turn: 10}
smoke: {seeds: 2, timesteps: 64, episodes: 16, num_envs: 8}
"""


def test_ray_backend_matches_local(tmp_path: Path) -> None:
    config = tmp_path / "grid.yaml"
    config.write_text(CONFIG)
    local = run_experiment(config, outdir=tmp_path / "local", progress=False)
    remote = run_experiment(config, outdir=tmp_path / "ray", backend="ray", cpus_per_trial=1)
    assert remote == local  # same seeds -> same cells -> same aggregated table
    assert len(list((tmp_path / "ray").glob("*.json"))) == 4
    assert any((tmp_path / "ray" / "ray").rglob("events.out.tfevents.*"))  # TensorBoard per trial
