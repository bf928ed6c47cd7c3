"""The README and the docs pages document every flag, their links work, and CI runs the README's
own commands. The README is the first hour (set-up, the main commands, where each topic lives);
the reference sections live in docs/*.md, linked from its table "Where each topic lives"."""

import re
from dataclasses import fields
from pathlib import Path

import pytest

from gan_lightning.config import TrainConfig
from gan_lightning.data.datasets import DATASETS
from gan_lightning.core.losses import LOSSES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FLAGS_PAGE = (ROOT / "docs" / "flags.md").read_text()  # the generated table of every flag
TRAINING_PAGE = (ROOT / "docs" / "training.md").read_text()  # data sets, losses, networks, ...
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250  # issue 25: keep the README to a newcomer's first hour; move reference to docs/

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target), images included


def setup_commands() -> list[str]:
    block = README.split("## Set-up: two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines()]


def test_two_setup_commands_at_the_top():
    install, tests = setup_commands()
    assert 'pip install -e ".[dev]"' in install and "scripts/train.py" in install
    assert tests == "python -m pytest"
    sections = re.findall(r"^## (.+)$", README, flags=re.M)
    assert sections[0] == "Set-up: two commands", sections
    assert README.index("## Set-up") < README.index("```"), "the set-up block is the README's first code"


def test_the_readme_stays_short():
    n = len(README.splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; move reference sections into docs/*.md"


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install --quiet -e ".[dev]"' in ci
    assert setup_commands()[1] in ci


def test_every_flag_data_set_and_loss_is_documented():
    for f in fields(TrainConfig):
        assert f"`--{f.name}`" in FLAGS_PAGE, f.name
    for name in DATASETS:
        assert f"`{name}`" in TRAINING_PAGE, name
    for name in LOSSES:
        assert f"`{name}`" in TRAINING_PAGE, name


def test_flags_table_matches_the_config():
    from gan_lightning.config import flags_markdown

    assert flags_markdown() in FLAGS_PAGE, "regenerate the docs/flags.md table from config.flags_markdown()"


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / target.split("#", 1)[0]).resolve() for target in LINK.findall(README)}
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert page.resolve() in linked, f"README.md does not link {page.relative_to(ROOT)}"


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings inside code blocks
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.relative_to(ROOT)}: {target} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.relative_to(ROOT)}: no heading #{anchor} in {dest.name}"
