"""`marl-gym calibrate`: measure this host's memory tiers into a system file, or fit the model to native runs.

    marl-gym calibrate [--fast SPEC] [--slow SPEC] [--workload W] [-o host.toml] [--quick]
    marl-gym calibrate --fit WORKLOAD --system host.toml [-o host-fitted.toml]

The first form measures each tier through the tiering allocator's backing (anon, numa:N, file:/dir):
sequential and random read, ordinary and non-temporal write bandwidth by thread count, idle and loaded
latency, and the cores' GFLOP/s on the workload's conv/linear layers; it writes a system file that
``system=`` accepts (with every sample and its provenance) and a PNG of the curves beside the presets'.
The second measures a set of placements of WORKLOAD on the native backend, fits the model's free
parameters (`marl_gym.calibrate.fit`) and writes the fitted system.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from marl_gym.calibrate.measure import CalibrationError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fast", default="anon", metavar="SPEC", help="fast-tier backing: anon (default), numa:N, file:/dir"
    )
    p.add_argument(
        "--slow", default="anon", metavar="SPEC", help="slow-tier backing: anon (default), numa:N, file:/dir"
    )
    p.add_argument(
        "--workload", default="resnet50", help="whose conv/linear layers give the GFLOP/s (default resnet50)"
    )
    p.add_argument("-o", "--output", metavar="PATH", help="system file to write (.toml or .json; default host.toml)")
    p.add_argument("--plot", metavar="PNG", help="plot to write (default: the output's name with .png)")
    p.add_argument("--no-plot", action="store_true", help="write no plot")
    p.add_argument("--name", help="the system's name (default: host name and backings)")
    p.add_argument("--quick", action="store_true", help="seconds, small buffers: a smoke check, not a calibration")
    p.add_argument("--threads", metavar="N,N", help="thread counts to measure (default 1, powers of 2, all cores)")
    p.add_argument("--reps", type=int, help="repetitions of each measurement (default 5; quick 3)")
    p.add_argument("--buffer-mib", type=int, help="buffer size per measurement (default max(1 GiB, 4 x LLC))")
    p.add_argument("--fast-capacity-gib", type=float, help="override the fast tier's capacity")
    p.add_argument("--slow-capacity-gib", type=float, help="override the slow tier's capacity")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    fit = p.add_argument_group("fitting the model to native runs (--fit)")
    fit.add_argument("--fit", metavar="WORKLOAD", help="measure placements of WORKLOAD natively and fit the model")
    fit.add_argument("--system", metavar="FILE", help="--fit: the calibrated system file to start from")
    fit.add_argument("--n-tasks", type=int, default=1, help="--fit: concurrent tasks (default 1)")
    fit.add_argument(
        "--threads-per-task",
        type=int,
        help="--fit: threads per task, natively and in the model (default cores / tasks)",
    )
    fit.add_argument("--placements", type=int, default=8, help="--fit: random placements besides the 4 fixed ones")
    fit.add_argument("--repeats", type=int, default=3, help="--fit: timed inferences per placement (default 3)")
    fit.add_argument("--heldout", type=float, default=1 / 3, help="--fit: share of placements held out (default 1/3)")
    fit.add_argument("--seed", type=int, default=0, help="--fit: seed of the random placements and the split")


def run(args: argparse.Namespace) -> int:
    try:
        return _run_fit(args) if args.fit else _run_calibrate(args)
    except (CalibrationError, ValueError) as exc:  # library errors are ValueErrors: one line, exit status 2
        print(f"marl-gym calibrate: error: {exc}", file=sys.stderr)
        return 2


def _threads(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CalibrationError(f"--threads takes comma-separated integers, got {text!r}") from None


def _run_calibrate(args: argparse.Namespace) -> int:
    from marl_gym.calibrate.measure import make_plan, measure_host
    from marl_gym.calibrate.system_file import build_system, write_system_file

    out = Path(args.output or "host.toml")
    if out.suffix not in (".toml", ".json"):
        raise CalibrationError(f"-o must end in .toml or .json, got {out}")
    plan = make_plan(
        args.fast or "anon",
        args.slow or "anon",
        args.workload,
        quick=args.quick,
        threads=_threads(args.threads),
        reps=args.reps,
        buffer_bytes=args.buffer_mib * 2**20 if args.buffer_mib else None,
    )
    raw = measure_host(plan, progress=not args.no_progress)
    gib = 2**30
    system, calibration = build_system(
        raw,
        args.name,
        int(args.fast_capacity_gib * gib) if args.fast_capacity_gib else None,
        int(args.slow_capacity_gib * gib) if args.slow_capacity_gib else None,
    )
    write_system_file(out, system, calibration)
    plot = None
    if not args.no_plot:
        from marl_gym.calibrate.plot import plot_calibration

        plot = plot_calibration(system, calibration, args.plot or out.with_suffix(".png"))
    _print_summary(system, calibration, out, plot)
    return 0


def _print_summary(system: dict, calibration: dict, out: Path, plot: Path | None) -> None:
    from marl_gym.calibrate.system_file import spread
    from marl_gym.memory.systems import get_system

    loaded = get_system(out)  # what `system=` will see
    prov = calibration["provenance"]
    print(f"calibrated {loaded.name} in {prov['seconds']:.0f} s -> {out}" + (f" (plot {plot})" if plot else ""))
    bw = calibration["samples"]["bandwidth_gbps"]
    threads = sorted(bw["fast"]["seq_read"], key=int)
    head = "/".join(threads)
    print(
        f"{'tier':<5} {'backing':<14} {'read GB/s @' + head:>20} {'nt write':>16} {'ordinary write':>16}  latency ns seq/rand/store"
    )
    for tier in ("fast", "slow"):
        row = [
            "/".join(f"{spread(bw[tier][kind][t])['median']:.1f}" for t in threads)
            for kind in ("seq_read", "seq_write_nt", "seq_write")
        ]
        dev = system[tier]
        lat = f"{dev['read_latency_ns']:.0f}/{dev['random_read_latency_ns']:.0f}/{dev['write_latency_ns']:.0f}"
        print(f"{tier:<5} {calibration['backings'][tier]:<14} {row[0]:>20} {row[1]:>16} {row[2]:>16}  {lat}")
    compute = calibration["samples"].get("compute")
    if compute:
        rates = ", ".join(f"{t} thr {spread(v)['median']:.1f}" for t, v in compute["gemm_gflops"].items())
        print(f"GFLOP/s of {compute['workload']}'s conv/linear layers: {rates} -> core_gflops {loaded.core_gflops:.1f}")
    agree = calibration["agreement"]
    differ = [k for k, v in agree.items() if not v["agree"]]
    print(
        f"tiers agree within their measurements' spread: {len(agree) - len(differ)}/{len(agree)} quantities"
        + (f" (differ: {', '.join(differ[:6])})" if differ else "")
    )
    for w in calibration["warnings"]:
        print(f"note: {w}")


def _run_fit(args: argparse.Namespace) -> int:
    from marl_gym.calibrate.native_fit import fit_native, system_to_dict
    from marl_gym.calibrate.system_file import read_calibration, write_system_file

    if not args.system:
        raise CalibrationError("--fit needs --system FILE (a system file from `marl-gym calibrate`)")
    system_path = Path(args.system)
    out = Path(args.output or system_path.with_name(system_path.stem + "-fitted" + system_path.suffix))
    result, table = fit_native(
        args.fit,
        system_path,
        n_tasks=args.n_tasks,
        threads_per_task=args.threads_per_task,
        n_random=args.placements,
        heldout_fraction=args.heldout,
        repeats=args.repeats,
        seed=args.seed,
        fast=args.fast,
        slow=args.slow,
        progress=not args.no_progress,
    )
    fitted = system_to_dict(result.system)
    note = (
        f"fitted by marl-gym calibrate --fit {table['workload']} (x{{:.3f}}, {table['n_tasks']} task(s) of "
        f"{table['threads_per_task']} thread(s))"
    )
    for tier, key in (("fast", "fast_bandwidth_scale"), ("slow", "slow_bandwidth_scale")):
        for field in ("read", "write", "ordinary_write"):
            old = fitted[tier]["sources"].get(field, "")
            fitted[tier]["sources"][field] = f"{old}; {note.format(result.params[key])}".lstrip("; ")
    calibration = read_calibration(system_path)
    calibration["fit"] = table
    calibration.setdefault("fields", {})["core_gflops"] = (
        f"{calibration.get('fields', {}).get('core_gflops', 'calibrated')}; {note.format(result.params['compute_scale'])}"
    )
    write_system_file(out, fitted, calibration)
    print(result.summary())
    pl = table["placements"]
    if 0 in pl["index"]:
        k = pl["index"].index(0)
        m, b, a = pl["measured_s"][k], pl["predicted_before_s"][k], pl["predicted_after_s"][k]
        print(
            f"all fast: measured {1e3 * m:.1f} ms; model {1e3 * b:.1f} ms calibrated ({100 * (b - m) / m:+.0f} %), "
            f"{1e3 * a:.1f} ms fitted ({100 * (a - m) / m:+.0f} %)"
        )
    if table["dropped"]:
        print(f"left out {len(table['dropped'])} run(s): {table['dropped'][:2]}")
    if not math.isfinite(result.heldout_error_after):
        print("note: nothing was held out (--heldout 0)")
    print(f"wrote {out}")
    return 0
