"""Reproduce the MARL paper's Figures 3, 9, 10, 11 and 12 on the analytic model, and go past them.

    python examples/reproduce_paper.py --out runs/repro              # full: about 5 minutes on 2 idle cores
    python examples/reproduce_paper.py --out /tmp/repro --quick      # smoke run: fewer task counts, tiny budget
    python examples/reproduce_paper.py --from-results runs/repro/results.json --out runs/repro   # redraw, rewrite

Writes to --out: fig3_resnet152_tasks.png, fig9_single_inference.png, fig10_max_tasks.png,
fig11_parallel_tasks.png, fig12_training_curve.png, the same Fig. 9 / Fig. 11 comparisons on the CXL and
NUMA presets (fig9_*_cxl.png, ...), the generalisation study (marl_lab/generalisation.py), results.json and
report.md, which puts our numbers beside the paper's, figure by figure. The runs, the report and the
figures are marl_lab/reproduction/ (study.py, report.py, figures.py); the setup is stated in the report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (PNGs, results.json, report.md)")
    p.add_argument("--quick", action="store_true", help="smoke run: task counts 1 and 32, tiny EGRL budget")
    p.add_argument("--budget", type=int, default=None, help="EGRL evaluations per point (default 300; quick 24)")
    p.add_argument("--fig12-budget", type=int, default=None, help="length of the Fig. 12 run (default 1000; quick 48)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="worker processes for the EGRL runs (default 2)")
    p.add_argument("--no-generalisation", action="store_true", help="skip the generalisation study")
    p.add_argument(
        "--from-results",
        default=None,
        metavar="RESULTS_JSON",
        help="run nothing: redraw the figures and rewrite report.md in --out from an earlier results.json",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from marl_lab.reproduction import (
        ResultsError,
        StudySettings,
        read_results,
        run_study,
        write_figures,
        write_report,
        write_results,
    )

    out = Path(args.out)
    if args.from_results:
        try:
            res = read_results(args.from_results)
        except ResultsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        settings = StudySettings(
            quick=args.quick,
            budget=args.budget,
            fig12_budget=args.fig12_budget,
            seed=args.seed,
            workers=args.workers,
            generalisation=not args.no_generalisation,
        )
        command = "python examples/reproduce_paper.py " + " ".join(sys.argv[1:] if argv is None else argv)
        res = write_results(run_study(settings, command), out / "results.json")
    write_figures(res, out)
    write_report(res, out)
    print(f"wrote {out / 'report.md'} ({res['wall_s']:.0f} s of runs)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
