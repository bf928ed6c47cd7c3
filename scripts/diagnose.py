#!/usr/bin/env python
"""The stability verdict of a run: D saturation, vanishing or unstable G gradients, mode collapse,
divergence, or healthy, each with its evidence, the flags that address it and the paper behind it.

    python scripts/diagnose.py runs/ring-mlp-minimax-20260101-120000      # a run folder
    python scripts/diagnose.py --wandb my-entity/gan_lightning/1a2b3c4d    # a W&B run (online)

Writes ``diagnosis.md`` and ``diagnosis.png`` into the run folder (``--out`` elsewhere; a W&B run
into ``diagnosis-<RUN_ID>`` unless ``--out`` is given) and prints the verdict. Every training run
writes the same files at its end. Bad input ends with one line and exit code 2, nothing written.
"""

import sys
from pathlib import Path

from gan_lightning.errors import UsageError
from gan_lightning.runs.cli import Parser, run_cli


def main(argv=None) -> int:
    from gan_lightning.diagnostics.diagnosis import MD, PNG, markdown
    from gan_lightning.runs.diagnosis import diagnose_run, local_run
    from gan_lightning.trainer.outputs import check_out_dir

    p = Parser(prog="diagnose.py", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", nargs="?", default="", help="run folder of scripts/train.py (holds metrics.csv)")
    p.add_argument("--wandb", default="", metavar="ENTITY/PROJECT/RUN_ID", help="diagnose a W&B run instead")
    p.add_argument("--out", default="", help="folder for diagnosis.md and diagnosis.png (default: the run folder)")
    args = p.parse_args(argv)
    if bool(args.run_dir) == bool(args.wandb):
        raise UsageError("give a run folder or --wandb ENTITY/PROJECT/RUN_ID (one of them)")
    if args.wandb:
        from gan_lightning.experiments.diagnose import wandb_run

        out = check_out_dir(args.out or f"diagnosis-{args.wandb.rstrip('/').split('/')[-1]}", "--out")
        config, rows, source = wandb_run(args.wandb)
    else:
        config, rows = local_run(args.run_dir)
        out, source = check_out_dir(args.out or args.run_dir, "--out"), Path(args.run_dir).resolve().name
    found = diagnose_run(rows, config, out, source)
    print(markdown(found, source), end="")
    print(f"wrote {out / MD} and {out / PNG}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
