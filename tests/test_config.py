"""Flag parsing: one typed config, YAML files, and one clear line for every bad input."""

import pytest
import torch
import yaml

from gan_lightning.runs.cli import run_cli
from gan_lightning.config import TrainConfig, parse_args
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
    from gan_lightning.config import resolve

    raw = TrainConfig(dataset="ring", d_norm="layer", metric_num_samples=300)
    once = resolve(raw)
    assert resolve(once) == once and raw.arch == "auto"  # a copy; the input is untouched
    assert (once.arch, once.d_norm, once.metric_num_samples) == ("mlp", "layer", 300)


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
    cfg = TrainConfig(dataset="ring", loss=loss, gp_weight=10.0 if loss == "wasserstein" else 0.0, weight_clip=0.0)
    module = build_module(cfg, (2,))
    assert len(module.d_penalties) == (1 if loss == "wasserstein" else 0)
    assert module.d_loss.__name__ == {"minimax": "d_bce_loss", "wasserstein": "d_wasserstein_loss"}[loss]
    assert module.config["loss"] == loss


def test_semi_supervised_task_builds_a_k_class_discriminator_and_feature_matching():
    from gan_lightning.modules import SemiSupervisedGAN
    from gan_lightning.core.objectives import AdversarialObjective, FeatureMatching

    cfg, _ = parse_args(["--task", "semi_supervised", "--dataset", "digits", "--arch", "mlp", "--image_size", "8",
                         "--minibatch_discrimination", "--mbd_kernels", "4", "--ema_decay", "0.9"])
    module = build_module(cfg, (1, 8, 8))
    assert isinstance(module, SemiSupervisedGAN) and isinstance(module.g_objective, FeatureMatching)
    assert module.classify(torch.randn(5, 1, 8, 8))[0].shape == (5, 10)  # K = 10 digit classes
    assert module.ema.decay == 0.9
    gan = build_module(parse_args(["--dataset", "digits", "--arch", "mlp", "--image_size", "8"])[0], (1, 8, 8))
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
