"""Does EGRL's GNN generalise? Train it with EGRL on some zoo workloads, place unseen ones zero-shot and
after a short fine-tune, against EGRL from scratch with the same short budget.

    python examples/generalisation.py                 # resnet50, resnet101, bert_base -> resnet152, wide_resnet50_2, gpt2
    python examples/generalisation.py --quick         # resnet50, bert_base -> resnet152, gpt2, tiny budgets
    python examples/generalisation.py --out runs/gen  # also writes results.json, report.md and actor.pt there

What each column means: marl_lab/generalisation.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for results.json, report.md, actor.pt (default: print only)")
    args = p.parse_args(argv)
    from marl_gym.io import atomic_write_text
    from marl_lab.generalisation import markdown, run, settings

    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    res = run(settings(args.quick, args.seed), out)
    text = markdown(res)
    print(text)
    if out is not None:
        atomic_write_text(out / "results.json", json.dumps({"schema_version": 1, **res}, default=float))
        atomic_write_text(out / "report.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
