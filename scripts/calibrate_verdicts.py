#!/usr/bin/env python
"""How often the stability verdicts are wrong: build a labeled corpus of real runs, score their verdicts.

    python scripts/calibrate_verdicts.py --build --jobs 2 --out docs/verdicts_calibration.md
    python scripts/calibrate_verdicts.py --only short --build      # the seconds-long members only

The corpus (gan_lightning/experiments/calibration.py) holds healthy recipes and one family per failure;
each run is trained once into --corpus (finished runs are reused) and scored from its run folder. The
confusion matrix per verdict, the targets and every run go to --out. Bad input (a missing or empty
corpus folder, a run folder without metrics.csv) ends with one line and exit code 2, nothing written.
"""

import sys

from gan_lightning.runs.cli import DefaultsHelpFormatter, Parser, run_cli


def main(argv=None) -> int:
    from gan_lightning.errors import UsageError
    from gan_lightning.experiments import calibration as C
    from gan_lightning.trainer.outputs import check_out_dir, check_out_file

    p = Parser(prog="calibrate_verdicts.py", description=__doc__.split("\n\n")[0],
               formatter_class=DefaultsHelpFormatter)
    p.add_argument("--corpus", default="runs/calibration", help="folder of the corpus runs")
    p.add_argument("--build", action="store_true", help="train the corpus runs not built yet before scoring")
    p.add_argument("--jobs", type=int, default=1, help="corpus runs trained at a time (one thread each)")
    p.add_argument("--only", default="", help="comma-separated run names, or 'short' (default: the whole corpus)")
    p.add_argument("--out", default="", help="the calibration table as Markdown (default: <corpus>/calibration.md)")
    args = p.parse_args(argv)
    entries = list(C.CORPUS)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        names = {e.name for e in entries}
        unknown = [n for n in wanted if n != "short" and n not in names]
        if unknown or not wanted:
            raise UsageError(f"--only: unknown corpus run {unknown[0] if unknown else repr(args.only)}; "
                             f"give 'short' or names such as {', '.join(sorted(names)[:3])}")
        entries = [e for e in entries if e.name in wanted or ("short" in wanted and e.short)]
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    out = check_out_file(args.out, "--out", overwrite=True) if args.out else None
    if args.build:
        C.build_all(entries, check_out_dir(args.corpus, "--corpus"), args.jobs, say=lambda s: print(s, file=sys.stderr))
    scored = C.calibrate(args.corpus, entries)
    command = "python scripts/calibrate_verdicts.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = C.markdown(scored, command.strip(), args.corpus)
    out = out or check_out_file(f"{args.corpus}/calibration.md", "--out", overwrite=True)
    out.write_text(text)
    print(text, end="")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
