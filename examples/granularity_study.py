"""Does per-tensor granularity help? Best placements at layer vs tensor granularity, same search.

    python examples/granularity_study.py   # resnet50, wide_resnet101_2, bert_base, torch_encoder; optane-16g-128g
    python examples/granularity_study.py --workloads resnet50 --tasks 24 32 --no-milp

For each workload and task count, the model-driven greedy and the exact optimum (MILP) run on the layer
graph and on the tensor graph; both granularities' placements are scored on the tensor graph's model
(marl_lab/granularity.py says how). Output: a markdown report on stdout (and in --out).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from marl_lab.granularity import TORCH_ENCODER

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workloads",
        nargs="+",
        default=["resnet50", "wide_resnet101_2", "bert_base", TORCH_ENCODER],
        help=f"zoo names, or {TORCH_ENCODER!r} (torch's nn.TransformerEncoder, extracted here; needs torch)",
    )
    parser.add_argument("--system", default="optane-16g-128g")
    parser.add_argument(
        "--tasks", nargs="+", type=int, help="task counts (default: the first binding count per workload, and 32)"
    )
    parser.add_argument("--no-milp", action="store_true", help="skip the exact MILP optimum")
    parser.add_argument("--milp-time-limit", type=float, default=120.0, help="seconds per MILP solve (default 120)")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    from marl_gym.io import atomic_write_text
    from marl_lab.granularity import binding_tasks, milp_solver, report, run

    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python examples/granularity_study.py", *(shlex.quote(a) for a in given)])
    use_milp = not args.no_milp and milp_solver() is not None
    rows = []
    for name in args.workloads:
        for n in args.tasks or sorted({binding_tasks(name, args.system), 32}):
            print(f"[{name}, {n} tasks] searching ...", file=sys.stderr, flush=True)
            rows.extend(run(name, n, args.system, use_milp, args.milp_time_limit))
    text = report(rows, command, args.system, use_milp)
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
