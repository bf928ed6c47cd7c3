"""A W&B report of a sweep or a set of runs, built with W&B's own report API (``wandb-workspaces``).

:func:`offline_plan` (``--dry_run``, no network) or :func:`online_plan` (the W&B API) finds the runs,
the metrics they log and the settings that were fixed or swept; :func:`build_report` shows, per group
of runs (default: loss, noise schedule and remedy, as :func:`gan_lightning.trainer.loggers.run_group`), the
image metrics against G steps, the best and final value of each as bars with the spread over seeds,
D's accuracy, the JSD estimate, G's gradient norm under both costs, sigma, the losses, and the
sample grids. The bars read the runs' summaries, which the report leaves as they are: runs of this
version keep each quality metric's best and last value there (``fid/lenet_5k.min``, ``.last``:
:func:`gan_lightning.trainer.loggers.define_axes`); runs logged before keep only the last, and for them
:func:`write_best` (``--write_best``, opt-in) stores each finished run's best value as ``best/<metric>``.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from gan_lightning.errors import UsageError
from gan_lightning.experiments.wandb_report_panels import BEST_PREFIX, NESTED, SAMPLES_KEY, bar_keys, diagnostics, grid
from gan_lightning.metrics.keys import PRIMARY, best_of

X_AXES = {"g_steps": "progress/g_steps", "images_seen": "progress/images_seen"}  # --x_axis -> logged key
DEFAULT_GROUP_BY = ("loss", "noise_schedule", "remedy")  # remedy: "none" for runs without a --remedy
METRIC_PREFIXES = (PRIMARY, "kid_mean", "is_mean", "precision", "recall", "density", "coverage", "modes_covered",
                   "high_quality")
SSL_METRIC = "ssl/test_error"  # modules/semi_supervised.py
TITLE_FIXED = ("dataset", "arch", "loss", "noise_schedule", "task")  # fixed settings worth a place in the title
TITLE_MAX = 128  # wandb_workspaces' Report.title limit


@dataclass
class Target:
    """Which runs: a sweep's, or a project's that match a filter (as a report expression and as API filters)."""

    entity: str
    project: str
    sweep_id: str = ""
    expression: str = ""  # wandb_workspaces filter expression of the report's run set
    api_filters: dict[str, Any] = field(default_factory=dict)  # the same for wandb.Api().runs

    @property
    def path(self) -> str:
        return "/".join(p for p in (self.entity, self.project, self.sweep_id) if p)


@dataclass
class ReportPlan:
    """Everything the report shows; ``settings_from`` says where ``fixed`` and ``swept`` were read."""

    target: Target
    name: str  # the sweep's (file's) name, or the project's path: what the title starts with
    label: str  # what the runs are, e.g. "losses_x_noise (sweep ent/proj/abc123)"
    group_by: list[str]
    x_axis: str
    metrics: list[str]
    fixed: dict[str, Any] = field(default_factory=dict)  # a setting every run shares -> its value
    swept: dict[str, str] = field(default_factory=dict)  # a setting that varies -> its values, as text
    settings_from: str = ""
    metrics_from: str = ""
    title: str = ""  # "": made from the settings (describe)
    nested: bool = True  # the runs' summaries hold each metric as {"min"|"max": best, "last": last}
    nested_from: str = "assumed for runs of this version: --dry_run looks nothing up"
    write_best: bool = False  # --write_best: best bars read best/<metric>, written into the runs (write_best)


# -- flags -------------------------------------------------------------------------------------
def parse_target(sweep: str = "", project: str = "", filters: str = "") -> Target:
    """``--sweep ENTITY/PROJECT/SWEEP_ID`` (or the URL form ``.../sweeps/ID``), or ``--project ENTITY/PROJECT``
    with ``--filters``; a UsageError for neither or both, a malformed path, filters that do not parse."""
    if bool(sweep) == bool(project):
        raise UsageError("give --sweep ENTITY/PROJECT/SWEEP_ID or --project ENTITY/PROJECT (one of them)")
    if sweep and filters:
        raise UsageError("--filters goes with --project; a --sweep report shows the sweep's runs")
    text, form = (sweep, "ENTITY/PROJECT/SWEEP_ID") if sweep else (project, "ENTITY/PROJECT")
    parts = text.strip("/").split("/")
    if sweep and len(parts) == 4 and parts[2] == "sweeps":
        del parts[2]
    if len(parts) != form.count("/") + 1 or not all(re.fullmatch(r"[\w.-]+", p) for p in parts):
        raise UsageError(f"{'--sweep' if sweep else '--project'}: {text!r} is not {form}")
    if sweep:
        return Target(*parts, expression=f"Metric('Sweep') = '{parts[2]}'")
    return Target(*parts, "", *parse_filters(filters))


_API_OPS = {"$eq": "=", "$ne": "!=", "$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">=", "$in": "IN", "$nin": "NIN"}
_RUN_SECTIONS = {"config.": "config", "summary_metrics.": "summary"}  # API path prefix -> filter section


def parse_filters(text: str) -> tuple[str, dict[str, Any]]:
    """(filter expression, API filters) from ``--filters``: JSON for ``wandb.Api().runs`` (``{"config.loss":
    "hinge"}``, ``$and``, ``$in``, ``$lt`` ...) or a wandb_workspaces expression (``Config('loss') = 'hinge'``)."""
    from wandb_workspaces import expr

    if not text.strip():
        return "", {}
    try:
        api_filters = json.loads(text) if text.lstrip().startswith("{") else None
        tree = expr.expr_to_filters(text) if api_filters is None else _api_to_tree(api_filters, expr)
        api_filters = _tree_to_api(tree) if api_filters is None else api_filters
        return expr.filters_v2_to_string(expr.filters_tree_to_v2(tree)), api_filters
    except (ValueError, SyntaxError, TypeError, AttributeError, KeyError) as e:
        raise UsageError(f"--filters: {_one_line(e)} (give W&B API JSON such as '{{\"config.loss\": \"hinge\"}}' "
                         "or an expression such as \"Config('loss') = 'hinge'\")") from None


def _api_to_tree(query: Any, expr) -> Any:
    if not isinstance(query, dict) or not query:
        raise ValueError(f"expected a JSON object of conditions, got {json.dumps(query)}")
    parts = []
    for key, value in query.items():
        if key in ("$and", "$or") and isinstance(value, list) and value:
            parts.append(expr.Filters(op=key[1:].upper(), filters=[_api_to_tree(v, expr) for v in value]))
            continue
        if key.startswith("$"):
            raise ValueError(f"unsupported operator {key}")
        prefix = next((p for p in _RUN_SECTIONS if key.startswith(p)), "")
        where = expr.Key(section=_RUN_SECTIONS.get(prefix, "run"), name=key[len(prefix):])
        is_ops = isinstance(value, dict) and value and all(str(k).startswith("$") for k in value)
        for op, v in (value.items() if is_ops else [("$eq", value)]):
            if op not in _API_OPS:
                raise ValueError(f"unsupported operator {op}")
            parts.append(expr.Filters(op=_API_OPS[op], key=where, value=v, disabled=False))
    return parts[0] if len(parts) == 1 else expr.Filters(op="AND", filters=parts)


def _tree_to_api(node) -> dict[str, Any]:
    if node.filters is not None:
        parts = [_tree_to_api(f) for f in node.filters]
        return parts[0] if len(parts) == 1 else {f"${node.op.lower()}": parts}
    prefix = {"config": "config.", "summary": "summary_metrics.", "run": ""}.get(node.key.section)
    op = {v: k for k, v in _API_OPS.items()}.get(node.op)
    if prefix is None or op is None:
        raise ValueError(f"{node.key.section} {node.op} has no W&B API filter")
    return {prefix + node.key.name: node.value if op == "$eq" else {op: node.value}}


# -- what runs log and what was fixed ----------------------------------------------------------
def select_metrics(keys: Iterable[str]) -> list[str]:
    """The keys that are image metrics (or the semi-supervised test error), the headline metric first."""
    keys = set(keys)
    found = [k for prefix in METRIC_PREFIXES for k in sorted(keys) if k.startswith(f"{prefix}/")]
    return found + ([SSL_METRIC] if SSL_METRIC in keys else [])


def sweep_settings(sweep: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(fixed, swept) parameters of a sweep config: ``{name: value}`` for ``value``, ``{name: "a, b"}``
    for ``values`` and ``{name: "log_uniform_values 0.01..1.0"}`` for a distribution."""
    fixed, swept = {}, {}
    for name, spec in (sweep.get("parameters") or {}).items():
        if not isinstance(spec, dict):
            continue
        if "value" in spec:
            fixed[name] = spec["value"]
        elif "values" in spec:
            swept[name] = ", ".join(str(v) for v in spec["values"])
        else:
            bounds = "..".join(str(spec[k]) for k in ("min", "max") if k in spec) or \
                ", ".join(f"{k}={v}" for k, v in spec.items() if k != "distribution")
            swept[name] = f"{spec.get('distribution', 'uniform')} {bounds}"
    return fixed, swept


def sweep_metrics(sweep: dict[str, Any]) -> list[str]:
    """The metrics the runs of a sweep log, worked out from the code that logs them (experiments.sweeps.run_keys)."""
    from gan_lightning.config import FIELD_TYPES
    from gan_lightning.experiments.sweeps import applicable_configs, check_runs, run_keys

    parameters = {k: v for k, v in (sweep.get("parameters") or {}).items() if k in FIELD_TYPES and isinstance(v, dict)}
    runs = check_runs(parameters, str(sweep.get("method"))) if parameters else [{}]
    return select_metrics(set().union(*(run_keys(cfg) for cfg in applicable_configs(runs))))


def runs_settings(configs: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """(fixed, swept) over runs' configs: a key every run has with one value is fixed, one with several swept."""
    fixed, swept = {}, {}
    common = set.intersection(*(set(c) for c in configs)) if configs else set()
    for key in sorted(k for k in common if not k.startswith("_")):
        values = list({json.dumps(c[key], sort_keys=True, default=str): c[key] for c in configs}.values())
        if len(values) == 1:
            fixed[key] = values[0]
        else:
            swept[key] = ", ".join(sorted(str(v) for v in values))
    return fixed, swept


# -- plans -------------------------------------------------------------------------------------
def offline_plan(target: Target, group_by: Sequence[str] = (), x_axis: str = "g_steps", title: str = "",
                 sweep_config: str | Path = "", write_best: bool = False) -> ReportPlan:
    """The plan of ``--dry_run``: nothing is looked up; settings and metrics come from ``sweep_config``
    (a sweep YAML, checked as ``sweep_local.py`` checks it) or, without one, metrics are those of a
    run with train.py's defaults. Summaries are assumed nested (runs of this version)."""
    from gan_lightning.experiments.sweeps import load_checked

    plan = _plan(target, group_by, x_axis, title, write_best)
    if sweep_config:
        sweep = load_checked(sweep_config)
        plan.fixed, plan.swept = sweep_settings(sweep)
        plan.metrics = sweep_metrics(sweep)
        plan.settings_from = plan.metrics_from = f"the sweep file {sweep_config}"
        plan.name = Path(sweep_config).stem
        plan.label = f"{plan.name} ({plan.label})"
    else:
        plan.metrics = sweep_metrics({})
        plan.metrics_from = "train.py's defaults (--dry_run without --sweep_config); the saved report uses the runs'"
        plan.settings_from = "W&B when the report is saved (--dry_run without --sweep_config)"
    return plan


def online_plan(target: Target, group_by: Sequence[str] = (), x_axis: str = "g_steps", title: str = "",
                write_best: bool = False) -> tuple[ReportPlan, list[Any]]:
    """The plan and the runs, read through ``wandb.Api()``: the settings from a sweep's config or the
    runs' configs, the metrics and their form (:func:`summary_form`) from the runs' summaries. A UsageError
    when W&B is offline, unreachable or has no API key, for an unknown sweep or project, and for a project
    with no (matching) runs."""
    from gan_lightning.trainer.loggers import wandb_mode

    plan = _plan(target, group_by, x_axis, title, write_best)
    mode, why = wandb_mode()  # a 3-second check, so no network does not mean wandb's long retries
    if mode != "online":
        raise UsageError(f"cannot use the W&B API ({why}); pass --dry_run to print the report's spec offline")
    import wandb

    try:
        api = wandb.Api()
        if target.sweep_id:
            sweep = api.sweep(target.path)
            sweep_config, runs = dict(sweep.config or {}), list(sweep.runs)
            plan.name = sweep.name or target.sweep_id
            plan.label = f"{plan.name} ({plan.label})"
        else:
            sweep_config, runs = {}, list(api.runs(target.path, filters=target.api_filters or None))
        summaries = [set(run.summary.keys()) for run in runs]
        configs = [dict(run.config) for run in runs]
        plan.metrics = select_metrics(set().union(*summaries))
        plan.nested, plan.nested_from = summary_form(runs, plan.metrics)
    except Exception as e:  # no such entity/project/sweep, no permission, the network: one line
        raise UsageError(f"cannot read {target.path} from W&B ({_one_line(e)})") from None
    if sweep_config:
        plan.fixed, plan.swept = sweep_settings(sweep_config)
        plan.settings_from = f"the config of sweep {target.path}"
    elif runs:
        plan.fixed, plan.swept = runs_settings(configs)
        plan.settings_from = f"the configs of the {len(runs)} runs"
    else:
        raise UsageError(f"--project {target.path}: no runs{' match --filters' if target.api_filters else ''}")
    plan.metrics_from = f"the summaries of the {len(runs)} runs"
    if not plan.metrics and sweep_config:
        plan.metrics, plan.metrics_from = sweep_metrics(sweep_config), "the sweep's config (no run has logged one yet)"
    return plan, runs


def summary_form(runs: Sequence[Any], metrics: Sequence[str]) -> tuple[bool, str]:
    """(nested, why): nested unless a run's summary holds a metric as its last value only (a run logged
    before :func:`gan_lightning.trainer.loggers.define_axes` kept ``{"min"|"max": best, "last": last}``)."""
    def nested(value: Any) -> bool:  # a dict, or the API's SummarySubDict
        return callable(getattr(value, "keys", None)) and bool(set(NESTED) & set(value.keys()))

    if not any(m in run.summary for run in runs for m in metrics):
        return True, "assumed for runs of this version: no run has logged a metric yet"
    flat = sum(any(m in run.summary and not nested(run.summary[m]) for m in metrics) for run in runs)
    return not flat, (f"{flat} of the {len(runs)} runs were logged before runs kept each metric's best value"
                      if flat else f"read from the summaries of the {len(runs)} runs")


def _plan(target: Target, group_by: Sequence[str], x_axis: str, title: str, write_best: bool = False) -> ReportPlan:
    """A plan with the flags checked: a --group_by key is a TrainConfig field (= the run's W&B config key)."""
    from gan_lightning.config import FIELD_TYPES

    for key in group_by:
        if key not in FIELD_TYPES:
            close = difflib.get_close_matches(key, FIELD_TYPES, n=1)
            raise UsageError(f"--group_by: {key!r} is not a config key of train.py"
                             f"{f'; did you mean {close[0]}?' if close else ''}")
    if x_axis not in X_AXES:
        raise UsageError(f"--x_axis: {x_axis!r} is not one of {', '.join(X_AXES)}")
    if len(title) > TITLE_MAX:
        raise UsageError(f"--title: W&B report titles have at most {TITLE_MAX} characters, got {len(title)}")
    label = f"sweep {target.path}" if target.sweep_id else f"project {target.path}"
    group_by = list(group_by) or list(DEFAULT_GROUP_BY)
    return ReportPlan(target, target.path, label, group_by, X_AXES[x_axis], [], title=title, write_best=write_best)


# -- the report --------------------------------------------------------------------------------
def bars_text(plan: ReportPlan) -> str:
    """The report's sentence on the bars: which summary values they show, or why there are no best bars."""
    goals = ", ".join(f"{best_of(m)} of `{m}`" for m in plan.metrics) or "none"
    final = "`<metric>.last`" if plan.nested else "the summary value (the last)"
    if plan.write_best:
        return (f"best: `best/<metric>` ({goals}), written into each finished run's summary by "
                f"`scripts/wandb_report.py --write_best`; final: {final}.")
    if plan.nested:
        return f"best: `<metric>.min` or `.max` ({goals}), final: {final}, as W&B keeps them in each run's summary."
    return (f"there are no best-value bars: {plan.nested_from}, so their summaries hold only the last value; "
            "`scripts/wandb_report.py --write_best` fills them in (it writes `best/<metric>` into finished runs).")


def describe(plan: ReportPlan) -> tuple[str, str, str]:
    """(title, description, markdown intro) of the report: what runs, which settings were fixed and swept."""
    swept = " × ".join(plan.swept) or "runs"
    shown = ", ".join(f"{k}={plan.fixed[k]}" for k in TITLE_FIXED if k in plan.fixed)
    title = plan.title or f"{plan.name}: {swept}{f' | {shown}' if shown else ''}"
    title = title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…"
    swept_list = "; ".join(f"{k} ∈ {{{v}}}" for k, v in plan.swept.items()) or "nothing"
    fixed_list = ", ".join(f"{k}={v}" for k, v in plan.fixed.items()) or "nothing"
    description = (f"Swept: {swept_list}. Fixed: {fixed_list}. (Settings from {plan.settings_from}.) "
                   f"Grouped by {', '.join(plan.group_by)}. Summaries: "
                   + ("nested, `<metric>.min`/`.max` and `.last`" if plan.nested else "flat, the last value only")
                   + f" ({plan.nested_from}).")
    lines = [f"**Runs**: {plan.label}" + (f", filter `{plan.target.expression}`" if plan.target.expression else "")
             + f"; x-axis `{plan.x_axis}`.",
             f"**Grouped by** config {', '.join(f'`{k}`' for k in plan.group_by)}: a line is a group's mean over its "
             "runs (seeds), its band their min..max; a bar is a group's mean, its error bar the std over runs.",
             f"**Metrics** (from {plan.metrics_from}): " + (", ".join(f"`{m}`" for m in plan.metrics) or "none found"),
             f"**Bars**: {bars_text(plan)}",
             f"**Settings** from {plan.settings_from}:", f"- swept: {swept_list}", f"- fixed: {fixed_list}"]
    return title, description, "\n\n".join(lines)


def build_report(plan: ReportPlan):
    """The ``wandb_workspaces`` Report of a plan (saved by :func:`save_report`, printed by ``report_spec``)."""
    import wandb_workspaces.reports.v2 as wr

    title, description, intro = describe(plan)

    def runset():
        # A config key needs "config." here: a bare name would group by a run attribute (wandb_workspaces).
        return wr.Runset(entity=plan.target.entity, project=plan.target.project, name=plan.label,
                         filters=plan.target.expression, groupby=[f"config.{k}" for k in plan.group_by])

    def line(name: str, keys: Sequence[str], log_y: bool = False):
        return wr.LinePlot(title=name, x=plan.x_axis, y=list(keys), log_y=log_y or None, aggregate=True,
                           groupby_aggfunc="mean", groupby_rangefunc="minmax", title_x=plan.x_axis)

    def bars(metric: str):  # best then final, side by side
        return [wr.BarPlot(title=f"{what} {metric}", metrics=[key], aggregate=True, groupby_aggfunc="mean",
                           groupby_rangefunc="stddev") for what, key in bar_keys(metric, plan.nested, plan.write_best)]

    none = wr.MarkdownBlock(text=f"No image metric found ({plan.metrics_from}).")
    best = "Best and final" if plan.nested or plan.write_best else "Final"
    sections = {f"Metrics against {plan.x_axis}": grid([line(m, [m]) for m in plan.metrics]),
                f"{best} value per group (mean ± std over runs)": grid([b for m in plan.metrics for b in bars(m)],
                                                                        per_row=2),
                "Diagnostics": grid([line(name, keys, log) for name, keys, log in diagnostics()]),
                "Samples": grid([wr.MediaBrowser(title="sample grids", media_keys=[SAMPLES_KEY], gallery_axis="step",
                                                  num_columns=4)], per_row=1, height=12)}
    blocks = [wr.MarkdownBlock(text=intro)]
    for heading, panels in sections.items():
        blocks += [wr.H2(text=heading), wr.PanelGrid(runsets=[runset()], panels=panels) if panels else none]
    return wr.Report(entity=plan.target.entity, project=plan.target.project, title=title, description=description,
                     blocks=blocks)


# -- saving ------------------------------------------------------------------------------------
def write_best(runs: Iterable[Any], metrics: Sequence[str]) -> int:
    """``--write_best`` (opt-in: it changes the runs): store ``best/<metric>`` (its ``best_of``: min, or max
    for IS/precision/recall/modes) in each finished run's summary from its history, for runs logged before
    summaries kept the best (running runs are left alone); returns how many runs were updated.
    A UsageError if W&B refuses to read a history or to write a summary."""
    updated = 0
    for run in runs:
        if getattr(run, "state", "finished") in ("running", "pending"):
            continue  # its own summary uploads would replace ours
        best = {}
        try:
            for metric in metrics:
                rows = run.scan_history(keys=[metric])
                values = [v for row in rows if isinstance(v := row.get(metric), (int, float)) and v == v]  # not NaN
                if values:
                    best[f"{BEST_PREFIX}{metric}"] = (max if best_of(metric) == "max" else min)(values)
            if best:
                run.summary.update(best)
                updated += 1
        except Exception as e:
            raise UsageError(f"cannot write best values to run {run.id} ({_one_line(e)})") from None
    return updated


def save_report(report) -> str:
    """``report.save()``, then the report's URL; a UsageError if W&B refuses (permission, network)."""
    try:
        report.save()
        return report.url
    except Exception as e:
        raise UsageError(f"cannot save the report to {report.entity}/{report.project} ({_one_line(e)})") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]
