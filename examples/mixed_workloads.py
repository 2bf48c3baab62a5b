"""Mixed co-located workloads: what placing each workload for the mix gains over giving every task the same share.

    python examples/mixed_workloads.py                          # the default mixes -> docs/mixed_workloads.md
    python examples/mixed_workloads.py --mix resnet50=8,bert_base=4:32 --out /tmp/mix.md --egrl-budget 400

For each mix (``name=count,...[:batch]``) the report compares Memory Mode, DRAM-only, each workload's
optimum alone, the equal DRAM share, random search, EGRL and the joint optimum of the mix, on the analytic
model (marl_lab/mixed.py says what each row is).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mix", action="append", help="name=count,...[:batch_size] (repeatable; default: four mixes)")
    p.add_argument("--system", default="optane-16g-128g")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per MILP")
    p.add_argument("--random-budget", type=int, default=2000, help="evaluations of random search (0 = skip)")
    p.add_argument(
        "--egrl-budget", type=int, default=0, help="evaluations of EGRL (0 = skip; slow: ~1.5 s each on 2 cores)"
    )
    p.add_argument("--out", default="docs/mixed_workloads.md", help="markdown report")
    p.add_argument("--append", action="store_true", help="add this run (command and tables) to an existing --out")
    p.add_argument("--json", default=None, help="also write the numbers as JSON here")
    args = p.parse_args(argv)
    from marl_gym.io import atomic_write_text, jsonable
    from marl_gym.mix import MixError
    from marl_lab.mixed import DEFAULT_MIXES, SCHEMA_VERSION, markdown, parse_mix, study

    try:
        mixes = [parse_mix(m) for m in (args.mix or DEFAULT_MIXES)]
    except MixError as exc:
        p.error(str(exc))
    command = "python examples/mixed_workloads.py" + (" " + " ".join(sys.argv[1:] if argv is None else argv)).rstrip()
    results = []
    for tasks, batch in mixes:
        res = study(tasks, batch, args.system, args.time_limit, args.random_budget, args.egrl_budget)
        results.append(res)
        text = markdown([res], command, args.system)
        print(text[text.index("## ") :], flush=True)
        print(f"({res['seconds']:.1f} s)", flush=True)
    text = markdown(results, command.strip(), args.system) + "\n"
    if args.append and Path(args.out).exists():
        body = text[text.index("```") :]  # this run's command and tables, under the existing report
        text = Path(args.out).read_text().rstrip("\n") + "\n\n---\n\n" + body
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")
    if args.json:
        data = {"schema_version": SCHEMA_VERSION, "kind": "marl_gym.MixedWorkloadsReport", "command": command}
        data.update(system=args.system, results=results)
        atomic_write_text(args.json, json.dumps(jsonable(data), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
