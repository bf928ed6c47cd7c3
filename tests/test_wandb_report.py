"""scripts/wandb_report.py: the report's spec offline (--dry_run), the saved report with the W&B API
faked (wandb_workspaces' own tests patch the look-ups the same way), and every refused input."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from script_harness import assert_one_line, run_script, tree

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


@pytest.fixture
def watched(tmp_path, monkeypatch) -> Path:
    """A folder holding W&B's folders, HOME (so no ~/.netrc API key is found) and the working
    directory: a test asserts that nothing under it changed."""
    root = tmp_path / "watched"
    for key, sub in {"WANDB_DIR": "wandb", "WANDB_CACHE_DIR": "cache", "WANDB_CONFIG_DIR": "config",
                     "WANDB_DATA_DIR": "data", "HOME": "home"}.items():
        (root / sub).mkdir(parents=True)
        monkeypatch.setenv(key, str(root / sub))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))  # its font cache, on first import
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.chdir(root)
    return root


@pytest.fixture(autouse=True)
def _isolated(watched):
    return watched


def dry_run(args: list[str], capsys) -> dict:
    code, out, err = run_script("wandb_report", [*args, "--dry_run"], capsys)
    assert code == 0, err
    return json.loads(out)


def panels(spec: dict) -> list[dict]:
    return [p for b in spec["spec"]["blocks"] if b["type"] == "panel-grid"
            for p in b["metadata"]["panelBankSectionConfig"]["panels"]]


def run_sets(spec: dict) -> list[dict]:
    return [rs for b in spec["spec"]["blocks"] if b["type"] == "panel-grid" for rs in b["metadata"]["runSets"]]


def of_type(spec: dict, view: str) -> list[dict]:
    return [p["config"] for p in panels(spec) if p["viewType"] == view]


# -- the spec, offline -------------------------------------------------------------------------
@pytest.mark.parametrize("x_axis", ["g_steps", "images_seen"])
def test_dry_run_spec_of_a_sweep(x_axis, capsys, watched):
    from gan_lightning.experiments.sweeps import parse_run, run_keys
    from gan_lightning.metrics.keys import best_of, metric_key

    before = tree(watched)
    spec = dry_run(["--sweep", "ent/proj/abc123", "--sweep_config", str(ROOT / "sweeps/losses_x_noise.yaml"),
                    "--x_axis", x_axis], capsys)
    assert tree(watched) == before  # nothing written, not even W&B's folders

    lines = of_type(spec, "Run History Line Plot")
    assert {p["xAxis"] for p in lines} == {f"progress/{x_axis}"}
    # The metrics the sweep's runs log (mnist5k, 5,000 samples, LeNet), FID first.
    metrics = [metric_key(v, 5000, "lenet") for v in ("fid", "kid_mean", "is_mean", "precision", "recall", "density",
                                                      "coverage")]
    assert [p["metrics"] for p in lines[:len(metrics)]] == [[m] for m in metrics]
    # Diagnostics: keys a default run logs; only the two shadow gradient norms on a log scale.
    logged = run_keys(parse_run({}))
    diagnostics = {tuple(p["metrics"]): p.get("yLogScale", False) for p in lines[len(metrics):]}
    assert diagnostics[("grad_norm/g_minimax", "grad_norm/g_nonsaturating")] is True
    assert [k for k, log in diagnostics.items() if log] == [("grad_norm/g_minimax", "grad_norm/g_nonsaturating")]
    assert {("d/acc",), ("d/jsd_estimate",), ("noise/sigma",), ("loss/d", "loss/g")} <= set(diagnostics)
    assert {k for keys in diagnostics for k in keys} <= logged
    # Lines and bars are group means, with the spread over the group's runs.
    assert all(p["aggregate"] and p["groupAgg"] == "mean" and p["groupArea"] == "minmax" for p in lines)
    # Bars: the nested summaries runs of this version keep (assumed, as nothing is looked up): best and last.
    bars = of_type(spec, "Bar Chart")
    assert [p["metrics"] for p in bars] == [k for m in metrics for k in ([f"{m}.{best_of(m)}"], [f"{m}.last"])]
    assert [p["metrics"] for p in bars[:2]] == [["fid/lenet_5k.min"], ["fid/lenet_5k.last"]]
    assert "precision/lenet_5k.max" in {k for p in bars for k in p["metrics"]}
    assert "Summaries: nested" in spec["description"] and "assumed for runs of this version" in spec["description"]
    assert all(p["aggregate"] and p["groupAgg"] == "mean" and p["groupArea"] == "stddev" for p in bars)
    assert [p["mediaKeys"] for p in of_type(spec, "Media Browser")] == [["samples"]]
    # Every panel grid shows the sweep's runs, grouped by loss and noise schedule (config keys).
    for rs in run_sets(spec):
        assert rs["project"] == {"name": "proj", "entityName": "ent"}
        assert rs["grouping"] == [{"section": "config", "name": "loss.value"},
                                  {"section": "config", "name": "noise_schedule.value"},
                                  {"section": "config", "name": "remedy.value"}]
        assert rs["filters"]["filters"] == [{"key": {"section": "run", "name": "sweep"}, "op": "=",
                                             "value": "abc123", "disabled": False}]
    assert len(run_sets(spec)) == 4


@pytest.mark.parametrize("sweep_file", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_title_and_description_state_fixed_and_swept_settings(sweep_file, capsys):
    spec = dry_run(["--sweep", "ent/proj/abc123", "--sweep_config", str(sweep_file)], capsys)
    parameters = yaml.safe_load(sweep_file.read_text())["parameters"]
    fixed = {k: v["value"] for k, v in parameters.items() if "value" in v}
    swept = [k for k in parameters if k not in fixed]
    description = spec["description"]
    swept_part, fixed_part = description.split(". Fixed: ")
    assert all(f"{k}={v}" in fixed_part for k, v in fixed.items())
    assert all(f"{k} ∈ {{" in swept_part for k in swept) and not any(f"{k}=" in swept_part for k in fixed)
    title, start = spec["displayName"], f"{sweep_file.stem}: {' × '.join(swept)}"
    assert len(title) <= 128  # W&B's limit; a longer one is cut, marked by "…"
    assert title.startswith(start) or title.endswith("…") and start.startswith(title[:-1])
    if not title.endswith("…"):  # the main fixed settings follow what was swept
        shown = [f"{k}={fixed[k]}" for k in ("dataset", "arch", "loss", "noise_schedule", "task") if k in fixed]
        assert title.split(" | ")[1:] == ([", ".join(shown)] if shown else [])
    intro = next(b["content"] for b in spec["spec"]["blocks"] if b["type"] == "markdown-block")
    assert f"the sweep file {sweep_file}" in intro and all(f"{k}=" in intro for k in fixed)


def test_dry_run_with_write_best_shows_the_written_keys(capsys, watched):
    before = tree(watched)
    spec = dry_run(["--sweep", "ent/proj/abc123", "--sweep_config", str(ROOT / "sweeps/losses_x_noise.yaml"),
                    "--write_best"], capsys)
    assert tree(watched) == before
    assert [p["metrics"] for p in of_type(spec, "Bar Chart")][:2] == [["best/fid/lenet_5k"], ["fid/lenet_5k.last"]]


def test_distributions_are_described_with_their_range(capsys):
    spec = dry_run(["--sweep", "ent/proj/abc123", "--sweep_config", str(ROOT / "sweeps/noise_bayes.yaml")], capsys)
    noise_std = yaml.safe_load((ROOT / "sweeps/noise_bayes.yaml").read_text())["parameters"]["noise_std"]
    described = f"{noise_std['distribution']} {noise_std['min']}..{noise_std['max']}"
    assert f"noise_std ∈ {{{described}}}" in spec["description"]


def test_project_filters_as_json_or_expression_and_group_by(capsys):
    as_json = dry_run(["--project", "ent/proj", "--group_by", "loss,seed", "--filters",
                       '{"config.dataset": "mnist5k", "state": {"$in": ["finished", "crashed"]}}'], capsys)
    as_expression = dry_run(["--project", "ent/proj", "--group_by", "loss,seed", "--filters",
                             "Config('dataset') = 'mnist5k' and Metric('State') in ['finished', 'crashed']"], capsys)
    for spec in (as_json, as_expression):
        for rs in run_sets(spec):
            assert rs["grouping"] == [{"section": "config", "name": "loss.value"},
                                      {"section": "config", "name": "seed.value"}]
    filters = [rs["filters"] for rs in run_sets(as_json)]
    assert filters == [rs["filters"] for rs in run_sets(as_expression)]
    assert {(f["key"]["section"], f["key"]["name"], f["op"]) for f in filters[0]["filters"]} == \
        {("config", "dataset", "="), ("run", "state", "IN")}
    # Without a sweep file the dry run says where the saved report reads the settings.
    assert "W&B when the report is saved" in as_json["description"]


def test_parse_filters_gives_the_same_api_filters_both_ways():
    from gan_lightning.experiments.wandb_report import parse_filters

    given = {"$or": [{"config.loss": "hinge"}, {"summary_metrics.fid/lenet_5k": {"$lte": 50}}], "group": "g"}
    expression, api = parse_filters(json.dumps(given))
    assert api == given
    assert parse_filters(expression)[1] == {"$and": [{"$or": given["$or"]}, {"group": "g"}]}


# -- the saved report, W&B faked ---------------------------------------------------------------
class FakeSummary(dict):
    def __init__(self, values: dict) -> None:
        super().__init__(values)
        self.written: dict = {}
        self.updates = 0

    def update(self, values: dict) -> None:  # HTTPSummary.update writes to W&B
        self.updates += 1
        self.written.update(values)


class FakeRun(SimpleNamespace):
    def scan_history(self, keys):
        return [{k: row[k] for k in keys} for row in self.history if all(k in row for k in keys)]


def summary_of(history: list[dict], nested: bool) -> dict:
    """A run's summary as W&B keeps it: each key's last value, or for the quality metrics of a run of this
    version (trainer.loggers.define_axes) ``{"min"|"max": best, "last": last}`` (W&B's min/max skip NaN)."""
    from gan_lightning.metrics.keys import best_of

    last = {k: v for row in history for k, v in row.items()}
    if not nested:
        return last
    values = {k: [row[k] for row in history if k in row and row[k] == row[k]] for k in last}
    return {k: {best_of(k): (min if best_of(k) == "min" else max)(values[k]), "last": v} if best_of(k) else v
            for k, v in last.items()}


def fake_runs(nested: bool = True) -> list[FakeRun]:
    base = {"loss": "hinge", "noise_schedule": "none", "dataset": "mnist5k", "_wandb": {"x": 1}}
    history = [[{"fid/lenet_5k": 90.0, "precision/lenet_5k": 0.2}, {"loss/d": 1.0},
                {"fid/lenet_5k": 40.0, "precision/lenet_5k": 0.6}, {"fid/lenet_5k": 55.0, "precision/lenet_5k": 0.5}],
               [{"fid/lenet_5k": 70.0, "precision/lenet_5k": 0.3}, {"fid/lenet_5k": float("nan")}],
               [{"fid/lenet_5k": 80.0, "precision/lenet_5k": 0.1}]]
    states = ["finished", "crashed", "running"]
    return [FakeRun(id=f"run{i}", state=states[i], config={**base, "seed": i}, history=h,
                    summary=FakeSummary({**summary_of(h, nested), "loss/d": 1.0, "samples": {"_type": "images"}}))
            for i, h in enumerate(history)]


@pytest.fixture
def fake_wandb(monkeypatch):
    """wandb.Api() with a sweep of losses_x_noise.yaml and three runs; Report.save records the report."""
    import wandb
    import wandb_workspaces.reports.v2 as wr

    import gan_lightning.trainer.loggers as loggers

    seen = SimpleNamespace(saved=[], runs=fake_runs(), filters=[], sweep_config=yaml.safe_load(
        (ROOT / "sweeps/losses_x_noise.yaml").read_text()))

    class FakeApi:
        client = SimpleNamespace(app_url="https://wandb.test")  # what Report.url reads

        def sweep(self, path):
            if path != "ent/proj/abc123":
                raise ValueError(f"Could not find sweep {path}")
            return SimpleNamespace(config=seen.sweep_config, runs=seen.runs, name="losses_x_noise")

        def runs(self, path, filters=None):
            seen.filters.append((path, filters))
            return seen.runs

    def save(report, draft=False, clone=False):
        seen.saved.append(report)
        report.id = "fakeid"
        return report

    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setattr(wr.Report, "save", save)
    monkeypatch.setattr(loggers, "wandb_mode", lambda: ("online", ""))
    return seen


def bar_metrics(report) -> list[list[str]]:
    import wandb_workspaces.reports.v2 as wr

    return [p.metrics for b in report.blocks if isinstance(b, wr.PanelGrid) for p in b.panels
            if isinstance(p, wr.BarPlot)]


def intro(report) -> str:
    return report.blocks[0].text


def test_saved_report_of_a_sweep(fake_wandb, capsys):
    import wandb_workspaces.reports.v2 as wr

    code, out, err = run_script("wandb_report", ["--sweep", "ent/proj/abc123"], capsys)
    assert code == 0, err
    (report,) = fake_wandb.saved
    assert out.splitlines()[-1] == report.url
    assert report.url.startswith("https://wandb.test/ent/proj/reports/") and report.url.endswith("--fakeid")
    fixed = {k: v["value"] for k, v in fake_wandb.sweep_config["parameters"].items() if "value" in v}
    assert all(f"{k}={v}" in report.description for k, v in fixed.items())
    assert report.title == "losses_x_noise: loss × noise_schedule × seed | dataset=mnist5k"
    # The metrics are those in the runs' summaries, not those the sweep file would give.
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    assert [p.y for p in grids[0].panels] == [["fid/lenet_5k"], ["precision/lenet_5k"]]
    assert {(rs.entity, rs.project) for g in grids for rs in g.runsets} == {("ent", "proj")}
    # Nested summaries: the bars read the best and last value W&B keeps; no run is written to.
    assert bar_metrics(report) == [["fid/lenet_5k.min"], ["fid/lenet_5k.last"], ["precision/lenet_5k.max"],
                                   ["precision/lenet_5k.last"]]
    assert "Summaries: nested" in report.description and "read from the summaries of the 3 runs" in report.description
    assert [run.summary.updates for run in fake_wandb.runs] == [0, 0, 0]
    assert "none written" in err


def test_flat_summaries_have_no_best_bars_and_say_why(fake_wandb, monkeypatch, capsys):
    import wandb_workspaces.reports.v2 as wr

    monkeypatch.setattr(fake_wandb, "runs", fake_runs(nested=False))  # runs logged before define_axes kept the best
    code, out, err = run_script("wandb_report", ["--sweep", "ent/proj/abc123"], capsys)
    assert code == 0, err
    (report,) = fake_wandb.saved
    assert bar_metrics(report) == [["fid/lenet_5k"], ["precision/lenet_5k"]]  # final only, the plain keys
    assert "there are no best-value bars: 3 of the 3 runs were logged before" in intro(report)
    assert "`scripts/wandb_report.py --write_best` fills them in" in intro(report)
    assert "Summaries: flat" in report.description
    assert "Final value per group (mean ± std over runs)" in [b.text for b in report.blocks if isinstance(b, wr.H2)]
    assert [run.summary.updates for run in fake_wandb.runs] == [0, 0, 0]


def test_write_best_writes_each_finished_runs_best(fake_wandb, monkeypatch, capsys):
    monkeypatch.setattr(fake_wandb, "runs", fake_runs(nested=False))
    code, out, err = run_script("wandb_report", ["--sweep", "ent/proj/abc123", "--write_best"], capsys)
    assert code == 0, err
    (report,) = fake_wandb.saved
    assert bar_metrics(report) == [["best/fid/lenet_5k"], ["fid/lenet_5k"], ["best/precision/lenet_5k"],
                                   ["precision/lenet_5k"]]
    assert "written into each finished run's summary by `scripts/wandb_report.py --write_best`" in intro(report)
    # Best values: min of FID, max of precision over each finished run's history (NaN skipped);
    # the running run is left alone.
    runs = fake_wandb.runs
    for run in runs[:2]:
        fids = [r["fid/lenet_5k"] for r in run.history if r.get("fid/lenet_5k", float("nan")) == r.get("fid/lenet_5k")]
        precisions = [r["precision/lenet_5k"] for r in run.history if "precision/lenet_5k" in r]
        assert run.summary.written == {"best/fid/lenet_5k": min(fids), "best/precision/lenet_5k": max(precisions)}
    assert runs[2].summary.updates == 0
    assert "best values written to 2" in err


def test_summary_form_of_nested_flat_mixed_and_empty_runs():
    from wandb.apis.public.summary import HTTPSummary

    from gan_lightning.experiments.wandb_report import summary_form

    metrics = ["fid/lenet_5k", "precision/lenet_5k"]
    nested, flat = fake_runs(nested=True), fake_runs(nested=False)
    assert summary_form(nested, metrics) == (True, "read from the summaries of the 3 runs")
    assert summary_form(flat, metrics)[0] is False
    assert summary_form([*nested[:2], flat[2]], metrics) == \
        (False, "1 of the 3 runs were logged before runs kept each metric's best value")
    assert summary_form(nested, ["kid_mean/lenet_5k"])[0] is True  # nothing logged yet: runs of this version
    # The W&B API's summary hands a nested value out as a SummarySubDict, not a dict.
    api_summary = HTTPSummary(SimpleNamespace(dir=""), None, {"fid/lenet_5k": {"min": 12.1, "last": 13.4}, "x": 1})
    assert type(api_summary["fid/lenet_5k"]).__name__ == "SummarySubDict"
    assert summary_form([SimpleNamespace(summary=api_summary)], metrics)[0] is True
    api_summary = HTTPSummary(SimpleNamespace(dir=""), None, {"fid/lenet_5k": 13.4})
    assert summary_form([SimpleNamespace(summary=api_summary)], metrics)[0] is False


def test_saved_report_of_a_project_reads_settings_from_the_runs(fake_wandb, capsys):
    code, out, err = run_script("wandb_report", ["--project", "ent/proj", "--filters", '{"group": "hinge-noise_none"}',
                                                 "--x_axis", "images_seen"], capsys)
    assert code == 0, err
    assert fake_wandb.filters == [("ent/proj", {"group": "hinge-noise_none"})]
    (report,) = fake_wandb.saved
    swept, fixed = report.description.split(". Fixed: ")
    assert "seed ∈ {0, 1, 2}" in swept
    assert all(f"{k}={v}" in fixed for k, v in fake_wandb.runs[0].config.items() if k not in ("seed", "_wandb"))
    assert "_wandb" not in report.description
    assert {p.x for b in report.blocks for p in getattr(b, "panels", []) if hasattr(p, "x")} == \
        {"progress/images_seen"}


# -- refused input -----------------------------------------------------------------------------
BAD = {
    "malformed sweep": (["--sweep", "ent/proj"], "--sweep: 'ent/proj' is not ENTITY/PROJECT/SWEEP_ID"),
    "sweep path too long": (["--sweep", "ent/proj/a/b"], "is not ENTITY/PROJECT/SWEEP_ID"),
    "malformed project": (["--project", "proj"], "--project: 'proj' is not ENTITY/PROJECT"),
    "no runs named": (["--dry_run"], "give --sweep ENTITY/PROJECT/SWEEP_ID or --project"),
    "unknown x axis": (["--project", "ent/proj", "--x_axis", "epochs", "--dry_run"], "--x_axis"),
    "bad filters": (["--project", "ent/proj", "--filters", "{not json", "--dry_run"], "--filters:"),
    "bad expression": (["--project", "ent/proj", "--filters", "Nope('x') = 1", "--dry_run"], "--filters:"),
    "filters with a sweep": (["--sweep", "ent/proj/abc123", "--filters", "{}"], "--filters goes with --project"),
    "unknown group key": (["--project", "ent/proj", "--group_by", "los", "--dry_run"], "did you mean loss?"),
    "missing sweep file": (["--sweep", "ent/proj/abc123", "--sweep_config", "nope.yaml", "--dry_run"],
                           "nope.yaml: no such sweep file"),
    "sweep file without dry run": (["--sweep", "ent/proj/abc123", "--sweep_config", "nope.yaml"],
                                   "--sweep_config goes with --dry_run"),
    "W&B offline": (["--sweep", "ent/proj/abc123"], "cannot use the W&B API (WANDB_MODE=offline)"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_one_line(case, capsys, watched):
    args, says = BAD[case]
    before = tree(watched)
    code, out, err = run_script("wandb_report", args, capsys)
    assert_one_line(code, err, says)
    assert out == "" and tree(watched) == before


def test_no_api_key_and_no_network(monkeypatch, capsys, watched):
    before = tree(watched)
    monkeypatch.delenv("WANDB_MODE")
    code, out, err = run_script("wandb_report", ["--sweep", "ent/proj/abc123"], capsys)
    assert_one_line(code, err, "no W&B API key")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    code, out, err = run_script("wandb_report", ["--project", "ent/proj"], capsys)
    assert_one_line(code, err, "cannot reach 127.0.0.1")
    assert tree(watched) == before


def test_unknown_path_no_runs_and_refused_save(fake_wandb, monkeypatch, capsys):
    import wandb_workspaces.reports.v2 as wr

    code, out, err = run_script("wandb_report", ["--sweep", "ent/proj/nope"], capsys)
    assert_one_line(code, err, "cannot read ent/proj/nope from W&B (Could not find sweep ent/proj/nope)")

    def refuse(report, draft=False, clone=False):
        raise PermissionError("permission denied for project")

    monkeypatch.setattr(wr.Report, "save", refuse)
    code, out, err = run_script("wandb_report", ["--sweep", "ent/proj/abc123"], capsys)
    assert_one_line(code, err, "cannot save the report to ent/proj (permission denied for project)")
    assert out == "" and [run.summary.updates for run in fake_wandb.runs] == [0, 0, 0]  # runs left alone

    monkeypatch.setattr(fake_wandb, "runs", [])
    code, out, err = run_script("wandb_report", ["--project", "ent/other", "--filters", '{"group": "x"}'], capsys)
    assert_one_line(code, err, "--project ent/other: no runs match --filters")


def test_refused_best_values_name_the_saved_report(fake_wandb, capsys):
    def refuse(values):
        raise PermissionError("no write access")

    fake_wandb.runs[0].summary.update = refuse
    code, out, err = run_script("wandb_report", ["--sweep", "ent/proj/abc123", "--write_best"], capsys)
    line = assert_one_line(code, err, "cannot write best values to run run0 (no write access)")
    assert fake_wandb.saved and f"the report is saved at {fake_wandb.saved[0].url}" in line


def test_real_entry_point(capsys):
    code, out, err = run_script("wandb_report", ["--sweep", "ent/proj", "--dry_run"], capsys, process=True)
    assert_one_line(code, err, "--sweep: 'ent/proj' is not ENTITY/PROJECT/SWEEP_ID")
