"""The README documents every flag, and CI runs the README's own commands."""

from dataclasses import fields
from pathlib import Path

from gan_lightning.config import TrainConfig
from gan_lightning.data.datasets import DATASETS
from gan_lightning.core.losses import LOSSES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def setup_commands() -> list[str]:
    block = README.split("## Set-up: two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines()]


def test_two_setup_commands_at_the_top():
    install, tests = setup_commands()
    assert 'pip install -e ".[dev]"' in install and "scripts/train.py" in install
    assert tests == "python -m pytest"
    assert README.index("## Set-up") < README.index("## Flags")


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install --quiet -e ".[dev]"' in ci
    assert setup_commands()[1] in ci


def test_every_flag_data_set_and_loss_is_documented():
    for f in fields(TrainConfig):
        assert f"`--{f.name}`" in README, f.name
    for name in DATASETS:
        assert f"`{name}`" in README, name
    for name in LOSSES:
        assert f"`{name}`" in README, name


def test_flags_table_matches_the_config():
    from gan_lightning.config import flags_markdown

    assert flags_markdown() in README, "regenerate the README flags table from config.flags_markdown()"
