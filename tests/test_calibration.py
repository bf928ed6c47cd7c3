"""The verdict calibration: the corpus's seconds-long members built and scored as labeled, the confusion
matrix counted right, a crashed run left out, and bad input refused in one line with nothing written.
(The whole corpus is a benchmark: scripts/calibrate_verdicts.py --build, docs/verdicts_calibration.md.)"""

import json
from pathlib import Path

import pytest

from script_harness import tree
from gan_lightning.experiments import calibration as C
from gan_lightning.runs.cli import run_cli

SHORT = [e for e in C.CORPUS if e.short and e.name.endswith("-s0")]


def calibrate_main(argv):
    import importlib.util

    spec = importlib.util.spec_from_file_location("calibrate", Path(__file__).parents[1] / "scripts" / "calibrate_verdicts.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return run_cli(script.main, argv)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    C.build_all(SHORT, folder, jobs=1, say=lambda s: None)
    return folder


def test_the_short_members_get_the_verdicts_they_were_built_for(corpus, capsys):
    assert {e.family for e in SHORT} >= {"saturation (minimax, strong D)", "divergence (non-finite)"}
    out = corpus / "calibration.md"
    assert calibrate_main(["--corpus", str(corpus), "--only", ",".join(e.name for e in SHORT), "--out", str(out)]) == 0
    scored = C.calibrate(corpus, SHORT)
    for s in scored:
        assert s.labels and set(s.labels) <= set(s.found), (s.entry.name, s.line)
    table = C.confusion(scored)
    assert table["d_saturation"]["FN"] == table["divergence"]["FN"] == 0
    assert sum(table["divergence"].values()) == len(scored) - sum(  # "also" symptoms count neither way
        "divergence" in s.entry.also and "divergence" not in s.labels for s in scored)
    text = out.read_text()
    assert "| verdict | TP | FP | FN | TN |" in text and "ring-saturated-s0" in text
    assert capsys.readouterr().out == text


def test_each_decided_threshold_shows_the_nearest_runs_on_both_sides_and_names_any_on_the_wrong_one(corpus,
                                                                                                 monkeypatch):
    from gan_lightning.experiments import calibration_margins as M

    scored = C.calibrate(corpus, SHORT)
    [row] = [line for line in M.margins(scored, corpus) if "EXPLODED_BCE" in line]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    fire, quiet = (float(cells[i].split()[0]) for i in (3, 4))
    # the exploding ring run (lr 5, -log D) must reach 100; the saturated one (minimax) stays far below
    assert fire >= 100 > quiet and "ring-exploding-s0" in cells[3] and "ring-saturated-s0" in cells[4]
    assert cells[5] == "none"
    # a threshold above the exploding run's peak puts it on the wrong side, by name
    monkeypatch.setattr(M, "DECISIONS", tuple((n, fire * 2 if "BCE" in n else t, *rest)
                                              for n, t, *rest in M.DECISIONS))
    [row] = [line for line in M.margins(scored, corpus) if "EXPLODED_BCE" in line]
    assert row.split("|")[-2].strip() == "ring-exploding-s0"


def test_a_crashed_run_is_reported_and_not_counted(corpus, tmp_path):
    entry = SHORT[0]
    (tmp_path / entry.name).mkdir()
    (tmp_path / entry.name / "metrics.csv").write_text((corpus / entry.name / "metrics.csv").read_text())
    (tmp_path / f"{entry.name}.build.json").write_text(json.dumps({"exits": [1], "seconds": 1.0}))
    [s] = C.calibrate(tmp_path, [entry])
    assert not s.labels and s.left_out.startswith("crashed (exit 1")
    assert all(sum(c.values()) == 0 for c in C.confusion([s]).values())
    assert "left out: crashed (exit 1" in C.markdown([s], "test", tmp_path)


def test_a_healthy_recipe_whose_outcome_is_not_is_left_out():
    assert C.outcome_label([{"fid/lenet_1k": "100"}, {"fid/lenet_1k": "60"}], None) == ""
    assert "not improving to the end" in C.outcome_label([{"fid/lenet_1k": "100"}, {"fid/lenet_1k": "95"}], None)
    assert "modes" in C.outcome_label([{"modes_covered/1k": "5", "high_quality/1k": "0.9"}], 8)
    assert C.outcome_label([{"modes_covered/1k": "8", "high_quality/1k": "0.9"}], 8) == ""


@pytest.mark.parametrize("make, says", [
    (lambda p: p / "missing", "no such corpus folder"),
    (lambda p: p, "no corpus run in it"),
    (lambda p: (p / C.CORPUS[0].name).mkdir() or p, "no metrics.csv"),
])
def test_bad_corpus_folders_are_one_line_and_nothing_written(tmp_path, capsys, make, says):
    folder = make(tmp_path)
    before = tree(tmp_path)
    assert calibrate_main(["--corpus", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert tree(tmp_path) == before


def test_an_unknown_run_name_is_one_line(tmp_path, capsys):
    assert calibrate_main(["--corpus", str(tmp_path), "--only", "nope"]) == 2
    assert "--only: unknown corpus run nope" in capsys.readouterr().err
