"""Flag parsing: one typed config, YAML files, and one clear line for every bad input."""

import pytest
import torch
import yaml

from gan_lightning.runs.cli import run_cli
from gan_lightning.config import TrainConfig, parse_args, resolve
from gan_lightning.build import build_module
from gan_lightning.errors import UsageError
from gan_lightning.runs.training import main


def test_both_flag_spellings_and_types():
    cfg, given = parse_args(["--batch_size=32", "--lr_g", "1e-3", "--loss", "hinge", "--download"])
    assert (cfg.batch_size, cfg.lr_g, cfg.loss, cfg.download) == (32, 1e-3, "hinge", True)
    assert given == {"batch_size", "lr_g", "loss", "download"}
    assert cfg.lr_d == TrainConfig.lr_d  # untouched fields keep their defaults


@pytest.mark.parametrize("text, value", [("true", True), ("False", False), ("1", True), ("no", False)])
def test_bool_values_as_wandb_passes_them(text, value):
    cfg, _ = parse_args([f"--download={text}"])
    assert cfg.download is value


def test_yaml_file_then_command_line_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"batch_size": 16, "loss": "hinge", "dataset": "ring"}))
    cfg, given = parse_args(["--config", str(path), "--batch_size", "8"])
    assert (cfg.batch_size, cfg.loss, cfg.dataset) == (8, "hinge", "ring")
    assert {"batch_size", "loss", "dataset", "config"} <= given


def test_every_field_is_a_flag_with_help(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for name in TrainConfig.__dataclass_fields__:
        assert f"--{name}" in text


def test_dry_run_prints_resolved_config(capsys):
    assert run_cli(main, ["--dry_run", "--dataset", "ring", "--z_dim", "7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    # The resolved config (issue 14): auto is replaced by what the run uses.
    assert printed["dataset"] == "ring" and printed["z_dim"] == 7 and printed["arch"] == "mlp"


HARDWARE = {"accelerator", "devices", "strategy"}  # Lightning resolves these itself


@pytest.mark.parametrize("argv, expected", [
    ([], {"arch": "dcgan", "d_norm": "batch", "g_objective": "adversarial", "metric_extractor": "lenet-mnist",
          "metric_split": "test", "metric_num_samples": 5000, "label_seed": 0}),
    (["--dataset", "ring", "--seed", "3"], {"arch": "mlp", "d_norm": "none", "metric_extractor": "none",
                                            "metric_num_samples": 2500, "label_seed": 3}),
    (["--dataset", "cifar10"], {"metric_extractor": "inception"}),
    (["--task", "semi_supervised", "--arch", "improved_mnist", "--image_size", "28", "--label_seed", "7"],
     {"g_objective": "feature_matching", "d_norm": "none", "label_seed": 7}),
])
def test_dry_run_shows_no_auto_among_the_toolkit_settings(argv, expected, capsys):
    assert run_cli(main, ["--dry_run", *argv]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert {k: v for k, v in printed.items() if v == "auto" and k not in HARDWARE} == {}
    assert {k: printed[k] for k in expected} == expected


def test_resolve_is_idempotent_and_leaves_given_values():
    raw = TrainConfig(dataset="ring", d_norm="layer", metric_num_samples=300)
    once = resolve(raw)
    assert resolve(once) == once and raw.arch == "auto"  # a copy; the input is untouched
    assert (once.arch, once.d_norm, once.metric_num_samples) == ("mlp", "layer", 300)


@pytest.mark.parametrize("argv, strategy", [(["--accelerator", "cpu"], "single_device"),
                                            (["--accelerator", "cpu", "--devices", "2"], "ddp_gan"),
                                            (["--strategy", "ddp_spawn"], "ddp_spawn")])
def test_dry_run_shows_the_strategy_the_run_uses(argv, strategy, capsys):
    assert run_cli(main, ["--dry_run", *argv]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["strategy"] == strategy


def test_resolved_config_is_frozen_and_keeps_only_flags():
    import dataclasses

    cfg = resolve(TrainConfig(dataset="digits", task="semi_supervised", devices="0,1", accelerator="cpu"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.arch = "mlp"  # type: ignore[misc]
    assert (cfg.data_kind, cfg.num_outputs, cfg.devices_arg, cfg.processes) == ("images", 10, (0, 1), 2)
    assert list(cfg.to_dict()) == list(TrainConfig.__dataclass_fields__)  # config.yaml: the flags only


BAD_INPUTS = [
    (["--batch_szie", "3"], "did you mean --batch_size"),
    (["--batch_size", "abc"], "batch_size"),
    (["--lr_g", "fast"], "lr_g"),
    (["--download=maybe"], "download"),
    (["--loss", "wgan"], "valid values are: minimax, nonsaturating"),
    (["--dataset", "imagenet"], "mnist5k"),
    (["--arch", "resnet"], "dcgan"),
    (["--batch_size", "0"], ">= 1"),
    (["--batch_size", "-4"], ">= 1"),
    (["--lr_d", "0"], "> 0"),
    (["--lr_g", "-1e-4"], "> 0"),
    (["--image_size", "48"], "28, 32, 64"),
    (["--dataset", "ring", "--arch", "dcgan"], "use --arch mlp"),
    (["--resume", "/nonexistent/x.ckpt"], "no checkpoint file"),
    (["--config", "/nonexistent.yaml"], "no such file"),
    (["--beta1", "1.5"], "[0, 1)"),
    (["--logger", "mlflow"], "csv, wandb"),
    (["--devices", "two"], "--devices"),
    (["--max_epochs", "-1"], "--max_steps"),
]


@pytest.mark.parametrize("argv, fragment", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_one_line_exit_2(argv, fragment, capsys):
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert fragment in err
    assert "Traceback" not in err


def test_yaml_with_unknown_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("batch_size: 3\nlearning_rate: 0.1\n")
    with pytest.raises(UsageError, match="learning_rate"):
        parse_args(["--config", str(path)])


def test_yaml_with_wrong_type(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("batch_size: 2.5\n")
    with pytest.raises(UsageError, match="batch_size"):
        parse_args(["--config", str(path)])


@pytest.mark.parametrize("loss", ["minimax", "wasserstein"])
def test_build_module_resolves_names(loss):
    cfg = resolve(TrainConfig(dataset="ring", loss=loss, gp_weight=10.0 if loss == "wasserstein" else 0.0,
                              weight_clip=0.0))
    module = build_module(cfg, (2,))
    assert len(module.d_penalties) == (1 if loss == "wasserstein" else 0)
    assert module.d_loss.__name__ == {"minimax": "d_bce_loss", "wasserstein": "d_wasserstein_loss"}[loss]
    assert module.config["loss"] == loss


def test_semi_supervised_task_builds_a_k_class_discriminator_and_feature_matching():
    from gan_lightning.modules import SemiSupervisedGAN
    from gan_lightning.core.objectives import AdversarialObjective, FeatureMatching

    cfg, _ = parse_args(["--task", "semi_supervised", "--dataset", "digits", "--arch", "mlp", "--image_size", "8",
                         "--minibatch_discrimination", "--mbd_kernels", "4", "--ema_decay", "0.9"])
    module = build_module(resolve(cfg), (1, 8, 8))
    assert isinstance(module, SemiSupervisedGAN) and isinstance(module.g_objective, FeatureMatching)
    assert module.classify(torch.randn(5, 1, 8, 8))[0].shape == (5, 10)  # K = 10 digit classes
    assert module.ema.decay == 0.9
    gan = build_module(resolve(parse_args(["--dataset", "digits", "--arch", "mlp", "--image_size", "8"])[0]), (1, 8, 8))
    assert isinstance(gan.g_objective, AdversarialObjective)  # auto = adversarial for --task gan


TECHNIQUE_BAD_INPUTS = [
    (["--g_objective", "wasserstein"], "auto, adversarial, feature_matching"),
    (["--fm_distance", "l3"], "l1"),
    (["--label_smoothing", "1.5"], "(0, 1]"),
    (["--label_smoothing", "0.9", "--loss", "hinge"], "BCE loss"),
    (["--fm_layer", "body.2"], "--g_objective feature_matching"),
    (["--mbd_kernels", "0"], ">= 1"),
    (["--historical_averaging", "-1"], ">= 0"),
    (["--g_norm", "group"], "vbn"),
    (["--arch", "improved_mnist"], "28"),
    (["--task", "ssl"], "gan, semi_supervised"),
    (["--task", "semi_supervised", "--dataset", "ring"], "mnist5k"),
    (["--task", "semi_supervised", "--gp_weight", "10"], "--gp_weight is not part of --task semi_supervised"),
    (["--task", "semi_supervised", "--noise_std", "0.1"], "--noise_std"),
    (["--task", "semi_supervised", "--labels_per_class", "0"], ">= 1"),
    (["--unlabeled", "some"], "all, rest"),
    (["--ema_decay", "1"], "[0, 1)"),
]


@pytest.mark.parametrize("argv, fragment", TECHNIQUE_BAD_INPUTS, ids=[" ".join(a) for a, _ in TECHNIQUE_BAD_INPUTS])
def test_technique_bad_input_one_line_exit_2(argv, fragment, capsys):
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err


# -- anneal lengths follow the run (issue 25) ------------------------------------------------------
RING_EPOCH = 10_000 // 64  # G steps in one epoch of ring at batch size 64 (the partial last batch is dropped)


@pytest.mark.parametrize("argv, steps", [
    (["--dataset", "ring", "--max_epochs", "3"], 3 * RING_EPOCH),
    (["--dataset", "ring", "--max_epochs", "3", "--max_steps", "100"], 100),  # the limit reached first
    (["--dataset", "ring", "--max_epochs", "1", "--max_steps", "1000"], RING_EPOCH),
    (["--dataset", "ring", "--max_epochs", "-1", "--max_steps", "70"], 70),
    (["--dataset", "ring", "--max_epochs", "2", "--batch_size", "100", "--n_critic", "5"], 200),  # n_critic: same batch
    (["--dataset", "ring", "--max_epochs", "2", "--devices", "2", "--accelerator", "cpu"], 2 * (5_000 // 64)),  # DDP
    ([], 20 * (4_000 // 64)),  # the default run: 1,240 G steps of mnist5k
])
def test_run_g_steps(argv, steps):
    from gan_lightning.config import run_g_steps

    assert run_g_steps(resolve(parse_args(argv)[0])) == steps


@pytest.mark.parametrize("remedy, key", [("noise", "noise_anneal_steps"), ("roth", "roth_anneal_steps")])
def test_dry_run_shows_a_presets_anneal_over_the_whole_run(remedy, key, capsys):
    assert run_cli(main, ["--dry_run", "--remedy", remedy, "--dataset", "ring", "--max_epochs", "3"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)[key] == 3 * RING_EPOCH and err == ""
    # a length given wins, and one longer than the run says so in one line (stderr: stdout stays YAML)
    assert run_cli(main, ["--dry_run", "--remedy", remedy, "--dataset", "ring", "--max_epochs", "3", f"--{key}",
                          "10000"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)[key] == 10_000
    # 0.2 * (1 - 468 / 10000) = 0.191 (linear); 2 * 0.01 ** (468 / 10000) = 1.61 (exponential)
    what = "sigma ends at 0.191, not at 0" if remedy == "noise" else "Roth's gamma ends at 1.61, not at 0.02"
    assert err.splitlines() == [f"notice: --{key} 10000 is longer than the run ({3 * RING_EPOCH} G steps): {what}; "
                                f"--{key} -1 anneals over the whole run"]


def test_an_anneal_that_is_off_stays_minus_one_and_loads_no_data(monkeypatch):
    from gan_lightning.config import resolve

    import importlib

    monkeypatch.setattr(importlib.import_module("gan_lightning.config.resolve"), "_train_size", None)  # no call
    cfg = resolve(parse_args(["--remedy", "noise", "--noise_schedule", "constant"])[0])
    assert (cfg.noise_anneal_steps, cfg.roth_anneal_steps) == (-1, -1)


def test_metric_live_g_without_g_ema_gives_a_notice(capsys):
    assert run_cli(main, ["--dry_run", "--dataset", "ring", "--metric_live_g"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "notice: --metric_live_g has no effect without --g_ema (there is no average of G: the metrics score the "
        "live G under the plain keys anyway)"]
    assert run_cli(main, ["--dry_run", "--dataset", "ring", "--metric_live_g", "--g_ema", "0.99"]) == 0
    assert capsys.readouterr().err == ""


def test_notices_come_before_a_run_trains(tmp_path, capsys):
    argv = ["--dataset", "ring", "--max_steps", "2", "--logger", "none", "--metric_every_n_epochs", "0",
            "--diagnostics", "false", "--remedy", "noise", "--noise_anneal_steps", "10", "--out_dir", str(tmp_path)]
    assert run_cli(main, argv) == 0
    err = capsys.readouterr().err
    assert "notice: --noise_anneal_steps 10 is longer than the run (2 G steps): sigma ends at 0.16, not at 0" in err
    assert err.index("notice:") < err.index("run folder:")


@pytest.mark.parametrize("argv, says", [
    (["--noise_anneal_steps", "0"], "--noise_anneal_steps: must be >= 1, or -1 for the whole run, got 0"),
    (["--roth_anneal_steps", "-2"], "--roth_anneal_steps: must be >= 1, or -1 for the whole run, got -2"),
])
def test_bad_anneal_lengths_are_one_line(argv, says, tmp_path, capsys):
    from script_harness import assert_one_line

    assert_one_line(run_cli(main, [*argv, "--out_dir", str(tmp_path / "runs")]), capsys.readouterr().err, says)
    assert not (tmp_path / "runs").exists()
