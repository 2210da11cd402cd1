"""`recgym results`: the README's verdict lines and the learning-curve plot come from the stored v1 cells."""

from __future__ import annotations

from pathlib import Path

from recgym.experiments import (
    CLAIMS,
    LEARNING_CURVES,
    VERDICTS_BEGIN,
    VERDICTS_END,
    Cell,
    cell_config,
    claim_verdict,
    load_config,
    v1_table,
    write_cell,
    write_verdicts,
)


def store(root: Path, config_name: str, method: str, setting: str, values: dict[str, list[float]], **extra) -> None:
    """Full-size cells of ``method`` under ``setting`` in ``root/<config>``: one per env and seed, ``values[env][seed]``
    as every column (the verdicts read one), with the configuration a real run would record."""
    config = load_config(config_name)
    for env in config.envs:
        for seed, value in enumerate(values[env]):
            cell = Cell(method, env, setting, seed)
            record = {"method": method, "env": env, "setting": setting, "seed": seed, "code": "abc1234",
                      **dict.fromkeys(config.columns, value), "config": cell_config(config, config.full, cell), **extra}
            (root / config.name).mkdir(parents=True, exist_ok=True)
            write_cell(cell, record, root / config.name)


def test_verdicts_are_decided_by_paired_seeds_and_wait_for_every_cell(tmp_path: Path) -> None:
    claim = next(c for c in CLAIMS if (c.method, c.baseline) == ("ppo", "nonpersonalised"))
    assert claim_verdict(claim, tmp_path).endswith("not yet run: 0 of 20 cells")
    base = [10.0, 12.0, 9.0, 11.0, 13.0]  # seeds differ a lot; the paired differences do not
    store(tmp_path, "fairness_v1", "nonpersonalised", "max30", {"recgym/KuaiRec-v1": base, "recgym/KuaiRand-v1": base})
    assert claim_verdict(claim, tmp_path).endswith("not yet run: 10 of 20 cells")
    store(tmp_path, "fairness_v1", "ppo", "max30", {"recgym/KuaiRec-v1": [b + d for b, d in zip(base, (1.0, 1.2, 0.9, 1.1, 1.0))],
                                                    "recgym/KuaiRand-v1": [b + d for b, d in zip(base, (0.5, -0.6, 0.2, -0.1, 0.1))]})
    line = claim_verdict(claim, tmp_path)
    # KuaiRec: mean +1.04, t(4) half-width 2.776 x 0.114 / sqrt 5 = 0.142; KuaiRand: +0.02 +- 0.53
    assert "KuaiRec-v1: **yes** (+1.04 [+0.898, +1.18])" in line and "KuaiRand-v1: not shown (+0.02 [" in line
    lower = next(c for c in CLAIMS if c.metric == "dpfr")  # dpfr: lower is better, so a higher DPFR is a "no"
    store(tmp_path, "fairness_v1", "dsrm-hrl", "max30", {"recgym/KuaiRec-v1": [0.5] * 5, "recgym/KuaiRand-v1": [0.5] * 5})
    store(tmp_path, "fairness_v1", "ppo-fair", "max30", {"recgym/KuaiRec-v1": [0.3, 0.31, 0.29, 0.3, 0.3],
                                                         "recgym/KuaiRand-v1": [0.6, 0.61, 0.59, 0.6, 0.6]})
    line = claim_verdict(lower, tmp_path)
    assert "KuaiRec-v1: **no**" in line and "KuaiRand-v1: **yes**" in line and "mixed" not in line
    readme = tmp_path / "README.md"
    readme.write_text(f"# recgym\n\nintro\n\n{VERDICTS_BEGIN}\nold\n{VERDICTS_END}\n\n## More\n")
    block = write_verdicts(readme, tmp_path)
    text = readme.read_text()
    assert text.startswith("# recgym\n\nintro\n\n") and text.endswith("\n\n## More\n") and "old" not in text
    assert block.count("\n- ") == len(CLAIMS) and block.count("not yet run") == len(CLAIMS) - 2
    assert write_verdicts(readme, tmp_path) == block and readme.read_text() == text


def test_results_draw_the_stored_learning_curves(tmp_path: Path) -> None:
    curve = [{"steps": steps, "R_cum": value} for steps, value in ((200_000, 5.0), (400_000, 7.0), (1_000_000, 8.0))]
    store(tmp_path, "dorl_v1", "ppo", "default", {"recgym/KuaiRec-v1": [1.0, 2.0], "recgym/KuaiRand-v1": [1.0]},
          learning_curve=curve)
    table = v1_table(load_config("dorl_v1"), tmp_path)
    plot = tmp_path / "dorl_v1" / LEARNING_CURVES
    assert plot.stat().st_size > 10_000 and f"(../{plot.as_posix()})" in table
    assert "learning" not in v1_table(load_config("time_v1"), tmp_path)  # bandits: no training, no curve, no plot
    assert not (tmp_path / "time_v1").exists()
