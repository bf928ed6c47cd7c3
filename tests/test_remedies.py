"""--remedy presets (config.REMEDIES): what each sets, that flags given win, the bad combinations,
the W&B group, and sweeps/remedies.yaml: its grid, its holes (hinge x roth) and how train.py,
sweep_local.py and the sweep check treat them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gan_lightning.config import REMEDIES, noise_enabled, parse_args
from gan_lightning.errors import NotApplicable, UsageError
from gan_lightning.experiments.sweeps import load_sweep, run_flags, suggest, sweep_problems
from gan_lightning.runs.cli import run_cli
from gan_lightning.trainer.loggers import run_group
from gan_lightning.runs.training import SWEEP_ENV, main as train_main

ROOT = Path(__file__).resolve().parents[1]


def _on(cfg) -> set[str]:
    """Which remedies a config has on, read from the flags themselves."""
    on = {"noise": noise_enabled(cfg), "r1": cfg.r1_weight > 0, "roth": cfg.roth_gamma > 0,
          "sn": cfg.d_spectral_norm, "wgan_gp": cfg.gp_weight > 0}
    return {name for name, yes in on.items() if yes}


@pytest.mark.parametrize("name", list(REMEDIES))
def test_each_preset_turns_on_its_remedy_and_nothing_else(name):
    cfg, given = parse_args(["--remedy", name])
    assert cfg.remedy == name and _on(cfg) == ({name} if name != "none" else set())
    for key, value in REMEDIES[name].items():
        assert getattr(cfg, key) == value and key in given
    assert cfg.loss == "nonsaturating" and cfg.n_critic == 1  # a remedy leaves the loss alone


def test_the_papers_settings():
    noise, r1, roth = (parse_args(["--remedy", n])[0] for n in ("noise", "r1", "roth"))
    assert (noise.noise_std, noise.noise_schedule, noise.noise_final_std) == (0.2, "linear", 0.0)
    assert r1.r1_weight == 10.0 and r1.reg_every == 1
    assert (roth.roth_gamma, roth.roth_schedule) == (2.0, "exponential")
    wgan_gp = parse_args(["--remedy", "wgan_gp", "--loss", "minimax"])[0]
    assert (wgan_gp.loss, wgan_gp.gp_weight, wgan_gp.n_critic) == ("minimax", 10.0, 1)


def test_flags_given_win_over_the_preset():
    cfg, _ = parse_args(["--remedy", "r1", "--r1_weight", "3", "--reg_every", "4"])
    assert (cfg.r1_weight, cfg.reg_every) == (3.0, 4)
    cfg, _ = parse_args(["--remedy", "noise", "--noise_std", "0.5", "--noise_schedule", "cosine"])
    assert (cfg.noise_std, cfg.noise_schedule) == (0.5, "cosine")


@pytest.mark.parametrize("argv, message, kind", [
    (["--remedy", "dropout"], "--remedy: unknown value 'dropout'; valid values are: none, noise, r1, roth, sn, "
                              "wgan_gp", UsageError),
    (["--remedy", "r1", "--r1_weight", "0"], "--remedy r1 (= --r1_weight 10.0) is turned off by a flag given", UsageError),
    (["--remedy", "noise", "--noise_schedule", "none"], "--remedy noise (= --noise_std 0.2", UsageError),
    (["--remedy", "roth", "--loss", "hinge"], "--remedy roth does not apply to --loss hinge", NotApplicable),
    (["--remedy", "roth", "--loss", "least_squares"], "does not apply to --loss least_squares", NotApplicable),
    (["--remedy", "sn", "--arch", "improved_mnist", "--image_size", "28"], "--d_spectral_norm", UsageError),
    # a key a preset or alias set is named by the flag the user typed (issue 25)
    (["--remedy", "r1", "--compile"], "--compile with --remedy r1 (--r1_weight 10): that penalty differentiates D's "
                                      "input gradient", UsageError),
    (["--remedy", "r1", "--r1_weight", "5", "--compile"], "--compile with --r1_weight: that penalty", UsageError),
    (["--loss", "wasserstein_gp", "--compile"], "--compile with --loss wasserstein_gp (--gp_weight 10)", UsageError),
    (["--remedy", "noise", "--noise_std", "0"], "is turned off by a flag given with it (--noise_std 0); drop that "
                                                "flag, or the remedy", UsageError),
    (["--remedy", "sn", "--d_spectral_norm", "false"], "turned off by a flag given with it (--d_spectral_norm false)",
     UsageError),
    (["--remedy", "sn", "--d_norm", "batch"], "--remedy sn (--d_spectral_norm) with --d_norm batch", UsageError),
    (["--remedy", "sn", "--arch", "improved_mnist", "--image_size", "28"], "--remedy sn (--d_spectral_norm): the "
                                                                            "improved_mnist discriminator", UsageError),
    (["--remedy", "wgan_gp", "--task", "semi_supervised", "--dataset", "digits"],
     "--remedy wgan_gp (--gp_weight 10) is not part of --task semi_supervised (its D loss is the K+1 loss); drop "
     "--remedy wgan_gp", UsageError),
    (["--remedy", "noise", "--task", "semi_supervised", "--dataset", "digits"],
     "--remedy noise (instance noise) is not part of --task semi_supervised; drop --remedy noise", UsageError),
    (["--roth_gamma", "1", "--compile"], "--compile with --roth_gamma", UsageError),
])
def test_bad_combinations_are_refused(argv, message, kind):
    with pytest.raises(kind) as caught:
        parse_args(argv)
    assert message in str(caught.value)
    assert kind is UsageError or type(caught.value) is NotApplicable


def test_train_refuses_a_hole_with_exit_2_and_a_wandb_agent_skips_it_with_0(tmp_path, capsys, monkeypatch):
    argv = ["--remedy", "roth", "--loss", "hinge", "--out_dir", str(tmp_path / "runs")]
    monkeypatch.delenv(SWEEP_ENV, raising=False)
    assert run_cli(train_main, argv) == 2
    assert capsys.readouterr().err.startswith("error: --remedy roth does not apply")
    monkeypatch.setenv(SWEEP_ENV, "abc123")
    assert run_cli(train_main, argv) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("skipped, nothing to run: --remedy roth")
    assert run_cli(train_main, ["--remedy", "bogus", "--out_dir", str(tmp_path / "runs")]) == 2  # a typo still fails
    assert not (tmp_path / "runs").exists()


def test_the_group_names_loss_and_remedy():
    assert run_group(parse_args(["--remedy", "r1", "--loss", "hinge"])[0]) == "hinge-remedy_r1"
    assert run_group(parse_args(["--remedy", "noise"])[0]) == "nonsaturating-remedy_noise"
    assert run_group(parse_args([])[0]) == "nonsaturating-noise_none"  # without a remedy: as before


def test_remedies_sweep_runs_every_cell_but_the_holes_and_groups_by_loss_and_remedy():
    sweep = load_sweep(ROOT / "sweeps" / "remedies.yaml")
    assert sweep_problems(sweep, "remedies.yaml") == []
    runs, holes, done = [], [], []
    while found := suggest(sweep, done):
        found[0].state = "finished"
        done.append(found[0])
        try:
            runs.append(parse_args(run_flags(found[0].config))[0])
        except NotApplicable:
            holes.append({k: v["value"] for k, v in found[0].config.items()})
    assert len(runs) + len(holes) == 3 * 6 * 3
    assert sorted((h["loss"], h["remedy"], h["seed"]) for h in holes) == [("hinge", "roth", s) for s in (0, 1, 2)]
    groups: dict[str, set[int]] = {}
    for cfg in runs:
        groups.setdefault(run_group(cfg), set()).add(cfg.seed)
    assert len(groups) == 3 * 6 - 1 and all(seeds == {0, 1, 2} for seeds in groups.values())
    for cfg in runs:
        assert _on(cfg) == ({cfg.remedy} if cfg.remedy != "none" else set()), run_group(cfg)
        assert cfg.loss in ("minimax", "nonsaturating", "hinge") and cfg.n_critic == 1


def test_a_sweep_with_a_typo_next_to_a_hole_is_still_refused():
    sweep = load_sweep(ROOT / "sweeps" / "remedies.yaml")
    sweep["parameters"]["remedy"] = {"values": ["roth", "r2"]}
    problems = sweep_problems(sweep, "s.yaml")
    assert len(problems) == 1 and problems[0].startswith("s.yaml: parameters.remedy: value 'r2': --remedy: unknown")


def test_sweep_local_skips_the_holes_without_failing(tmp_path):
    sweep = tmp_path / "holes.yaml"
    sweep.write_text((ROOT / "sweeps" / "smoke.yaml").read_text().replace(
        "loss: {values: [nonsaturating, hinge]}", "loss: {value: hinge}").replace(
        "seed: {values: [0, 1]}", "seed: {value: 0}\n  remedy: {values: [roth, r1]}").replace(
        "max_steps: {value: 30}", "max_steps: {value: 2}"))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "sweep_local.py"), str(sweep), "--count", "2",
                           "--out_dir", str(tmp_path / "sweeps"), "--logger", "csv"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped: --remedy roth does not apply to --loss hinge" in proc.stdout
    assert "| not applicable |" in proc.stdout and "| finished |" in proc.stdout
