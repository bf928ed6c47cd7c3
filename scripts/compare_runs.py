#!/usr/bin/env python
"""Compare runs: FID (or --metric) against generator steps, grouped by loss and noise schedule.

    python scripts/compare_runs.py --runs_dir runs/sweeps/losses_x_noise-20250101-120000 --out report
    python scripts/compare_runs.py --project my-entity/gan_lightning --out report     # W&B API (online)
    python scripts/compare_runs.py --runs_dir runs/sweeps --group_by g_objective,minibatch_discrimination

Writes ``<out>/<metric>.png`` (one colour per group, one line per run) and ``<out>/<metric>.md``,
a table of the final and the best value per group (mean ± sample std over seeds), the metric and
why it was chosen (without --metric: the quality metric the most runs log), and one ``left out:``
line per reason runs were not compared (another metric, no config.yaml or metrics.csv, unreadable),
naming them; prints the same. Bad input ends with one line and exit code 2.
"""

import sys

from gan_lightning.runs.cli import Parser, run_cli
from gan_lightning.errors import UsageError
from gan_lightning.trainer.outputs import check_out_dir


def main(argv=None) -> int:
    from gan_lightning.experiments import compare

    p = Parser(prog="compare_runs.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs_dir", default="", help="folder of run folders (searched recursively; default: runs)")
    p.add_argument("--project", default="", help="W&B project (entity/project) to read instead of --runs_dir")
    p.add_argument("--filters", default="", help='W&B API filters as JSON, e.g. \'{"group": "minimax-noise_none"}\'')
    p.add_argument("--metric", default=None, help="key to compare (default: the quality metric the most runs log, "
                   "FID first on a tie)")
    p.add_argument("--group_by", default=None, help="comma-separated config keys that define a group, e.g. "
                   "g_objective,minibatch_discrimination (default: the W&B group, loss and noise schedule)")
    p.add_argument("--out", default="compare", help="folder for the PNG and the markdown table")
    p.add_argument("--overwrite", action="store_true", help="replace a comparison of the same metric in --out")
    args = p.parse_args(argv)
    out = check_out_dir(args.out, "--out")
    group_by = [k.strip() for k in (args.group_by or "").split(",") if k.strip()]
    if args.group_by is not None and not group_by:
        raise UsageError(f"--group_by: {args.group_by!r} names no config key; give keys such as "
                         "g_objective,minibatch_discrimination, or leave the flag out to group by loss and noise schedule")
    if args.metric is not None and not args.metric.strip():
        raise UsageError("--metric: empty; give a logged key such as fid/lenet_5k, or leave the flag out to compare "
                         "the metric the most runs log")
    if args.project and args.runs_dir:
        raise UsageError("give --runs_dir or --project, not both")
    if args.project:
        import json

        try:
            filters = json.loads(args.filters) if args.filters else None
        except json.JSONDecodeError as e:
            raise UsageError(f"--filters: not valid JSON ({e})") from None
        selection = compare.wandb_curves(args.project, args.metric or "", filters, group_by)
    else:
        selection = compare.local_curves(args.runs_dir or "runs", args.metric or "", group_by)
    metric, stem = selection.metric, compare.file_stem(selection.metric)
    goal = compare.goal_of(metric)
    stats = compare.group_stats(selection.curves, goal)
    check_out_dir(out, "--out", results=[f"{stem}.{ext}" for ext in ("png", "md")], overwrite=args.overwrite)
    png = compare.plot(selection.curves, metric, out / f"{stem}.png", left_out=len(selection.left_out))
    text = compare.markdown(selection, stats, goal)
    (out / f"{stem}.md").write_text(text + "\n")
    print(text)
    print(f"wrote {png} and {png.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
