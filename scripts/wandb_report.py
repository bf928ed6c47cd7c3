#!/usr/bin/env python
"""Build a W&B report of a sweep or a set of runs: metrics against G steps per group, best and final
values per group, D's diagnostics and the sample grids (docs/wandb_reports.md).

    python scripts/wandb_report.py --sweep my-entity/gan_lightning/abc123xy
    python scripts/wandb_report.py --project my-entity/gan_lightning --filters '{"config.dataset": "mnist5k"}'
    python scripts/wandb_report.py --sweep my-entity/gan_lightning/abc123xy --dry_run \
        --sweep_config sweeps/losses_x_noise.yaml

Saves the report and prints its URL; ``--dry_run`` prints the report's spec as JSON instead, with no
network. The runs are left as they are: the bars read the best and last value each run's summary keeps
(``fid/lenet_5k.min``, ``.last``). For runs logged before summaries kept the best, ``--write_best``
writes each finished run's best value to its summary (``best/<metric>``, needs write access) and the
best bars show it. Bad input ends with one line and exit code 2.
"""

import json
import sys

from gan_lightning.errors import UsageError
from gan_lightning.runs.cli import Parser, run_cli


def main(argv=None) -> int:
    from gan_lightning.experiments import wandb_report as wr
    from gan_lightning.experiments.wandb_report_panels import report_spec

    p = Parser(prog="wandb_report.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", default="", help="W&B sweep ENTITY/PROJECT/SWEEP_ID (what `wandb sweep` prints)")
    p.add_argument("--project", default="", help="W&B project ENTITY/PROJECT: a report of its runs (see --filters)")
    p.add_argument("--filters", default="", help="with --project: W&B API filters as JSON, e.g. "
                   "'{\"config.dataset\": \"mnist5k\"}', or an expression, e.g. \"Config('dataset') = 'mnist5k'\"")
    p.add_argument("--group_by", default="", help="comma-separated config keys that define a group "
                   f"(default: {','.join(wr.DEFAULT_GROUP_BY)})")
    p.add_argument("--x_axis", default="g_steps", choices=list(wr.X_AXES),
                   help="x-axis of every panel: G optimizer steps or real images seen")
    p.add_argument("--title", default="", help="report title (default: the sweep or project, what was swept, "
                   "the main fixed settings)")
    p.add_argument("--sweep_config", default="", help="with --dry_run: the sweep YAML (sweeps/<name>.yaml) whose "
                   "fixed and swept settings and metrics the spec states")
    p.add_argument("--write_best", action="store_true", help="opt-in, needs write access to the runs: write each "
                   "finished run's best value of each metric into its summary as best/<metric> (running runs are "
                   "skipped) and show those in the best bars; for runs logged before summaries kept the best")
    p.add_argument("--dry_run", action="store_true", help="print the report's spec as JSON; no network, nothing saved")
    args = p.parse_args(argv)
    target = wr.parse_target(args.sweep, args.project, args.filters)
    group_by = [k.strip() for k in args.group_by.split(",") if k.strip()]
    if args.sweep_config and not args.dry_run:
        raise UsageError("--sweep_config goes with --dry_run (a saved report reads the settings from W&B)")
    if args.dry_run:
        plan = wr.offline_plan(target, group_by, args.x_axis, args.title, args.sweep_config, args.write_best)
        print(json.dumps(report_spec(wr.build_report(plan)), indent=2))
        return 0
    plan, runs = wr.online_plan(target, group_by, args.x_axis, args.title, args.write_best)
    url = wr.save_report(wr.build_report(plan))  # first, so a refused report leaves the runs as they were
    if args.write_best:
        try:
            best = f"best values written to {wr.write_best(runs, plan.metrics)}"
        except UsageError as e:
            raise UsageError(f"{e}; the report is saved at {url}, its best-value bars lack those runs") from None
    else:
        best = f"summaries {'nested' if plan.nested else 'flat: no best bars (--write_best adds them)'}, none written"
    print(f"{len(runs)} runs, {best}; metrics: {', '.join(plan.metrics) or 'none'}", file=sys.stderr)
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
