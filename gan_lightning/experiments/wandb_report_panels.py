"""The panels of :mod:`gan_lightning.experiments.wandb_report` that do not depend on the runs: the
diagnostics plots, the grid layout, the summary keys of the bars, and the report's JSON without the network.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gan_lightning.metrics.keys import best_of

BEST_PREFIX = "best/"  # summary key of a run's best value written by --write_best: best/fid/lenet_5k
NESTED = ("min", "max", "last")  # a nested summary {"min": best, "last": last}; panels read "fid/lenet_5k.min"
SAMPLES_KEY = "samples"  # callbacks/samples.py logs the sample grids under it
GRID_COLUMNS, PANEL_HEIGHT = 24, 6  # W&B's report grid


def bar_keys(metric: str, nested: bool = True, write_best: bool = False) -> list[tuple[str, str]]:
    """(title, summary key) of a metric's bars: best, then final. Nested summaries: ``<metric>.min`` (or
    ``.max``, :func:`~gan_lightning.metrics.keys.best_of`) and ``<metric>.last``; flat ones: the plain key,
    with no best bar unless ``--write_best`` wrote ``best/<metric>``."""
    best = f"{BEST_PREFIX}{metric}" if write_best else f"{metric}.{best_of(metric)}" if nested else ""
    final = f"{metric}.last" if nested else metric
    return ([(f"best ({best_of(metric)})", best)] if best else []) + [("final", final)]


def diagnostics() -> list[tuple[str, list[str], bool]]:
    """(title, keys, log y) of the diagnostics panels (d/* from callbacks/accuracy.py, loss/* and noise/sigma from
    modules/gan.py); G's gradient norm under each of gradients.PAPER_G_COSTS on a log scale (decades apart)."""
    from gan_lightning.diagnostics.gradients import PAPER_G_COSTS

    return [("D accuracy", ["d/acc"], False), ("JSD estimate (D's BCE)", ["d/jsd_estimate"], False),
            ("G gradient norm under both costs", [f"grad_norm/g_{cost}" for cost in PAPER_G_COSTS], True),
            ("instance noise sigma", ["noise/sigma"], False), ("losses", ["loss/d", "loss/g"], False)]


def grid(panels: list, per_row: int = 3, height: int = PANEL_HEIGHT) -> list:
    """Lay panels out ``per_row`` to a row (wandb_workspaces would stack them all at (0, 0), then shuffle)."""
    import wandb_workspaces.reports.v2 as wr

    w = GRID_COLUMNS // per_row
    for i, panel in enumerate(panels):
        panel.layout = wr.Layout(x=(i % per_row) * w, y=(i // per_row) * height, w=w, h=height)
    return panels


def report_spec(report) -> dict[str, Any]:
    """The JSON ``report.save()`` sends (wandb_workspaces' model, camelCase), built without the network:
    save() looks up each run set's project id, which this leaves out."""
    import wandb_workspaces.reports.v2 as wr

    def offline(block):  # a run set with no project skips the look-up; the project is put back below
        return replace(block, runsets=[replace(rs, entity="", project="") for rs in block.runsets]) \
            if isinstance(block, wr.PanelGrid) else block

    model = replace(report, blocks=[offline(b) for b in report.blocks])._to_model()
    for block in model.spec.blocks:
        for runset in getattr(getattr(block, "metadata", None), "run_sets", []):
            runset.project = model.project.model_copy()
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
