"""`python -m allocator`: build, inspect, or run a command under the tiering allocator.

python -m allocator --info          library path, configuration, active in this process?
python -m allocator --path          just the library path (built if needed)
python -m allocator --env           shell lines that preload it (eval "$(python -m allocator --env)")
python -m allocator -- CMD ARGS...  run CMD with the allocator preloaded
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import textwrap

import allocator


def _epilog() -> str:
    lines = ["environment variables (read by the library at process start):"]
    for name, text in allocator.ENV_VARS.items():
        lines.append(f"  {name}")
        lines.extend(textwrap.wrap(text, width=92, initial_indent="      ", subsequent_indent="      "))
    lines.append("")
    lines.extend(textwrap.wrap(allocator.ENV_RULES, width=94))
    lines.append("")
    lines.append("see allocator/README.md for how it works and its limits")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m allocator",
        description="The marl-gym tiering allocator: an LD_PRELOAD library that puts each thread's large "
        "allocations in a fast or a slow memory tier, steered from Python (import allocator).",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--info", action="store_true", help="print the library path, its configuration and state")
    parser.add_argument("--json", action="store_true", help="with --info: print JSON")
    parser.add_argument("--path", action="store_true", help="print the library path (building it if needed)")
    parser.add_argument("--env", action="store_true", help="print shell lines that preload the library")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the library even if it is cached")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="a command to run with the allocator preloaded")
    args = parser.parse_args(argv)

    try:
        path = allocator.build(force=True) if args.rebuild else allocator.library_path()
    except allocator.BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if command:
        proc = subprocess.run(command, env=allocator.preload_env())
        return proc.returncode
    if args.path:
        print(path)
        return 0
    if args.env:
        print(f"export LD_PRELOAD={shlex.quote(' '.join(allocator.preload_env()['LD_PRELOAD'].split()))}")
        return 0
    if args.info or args.rebuild:
        active_here = allocator.is_active()
        try:
            probed = allocator.probe()
            probe_error = None
        except RuntimeError as exc:
            probed, probe_error = None, str(exc)
        settings = {k: os.environ[k] for k in allocator.ENV_VARS if k in os.environ}
        info = {
            "library": str(path),
            "source_hash": allocator.source_hash(),
            "active_in_this_process": active_here,
            "config_in_this_process": allocator.config() if active_here else None,
            "config_under_preload": probed["config"] if probed else None,
            "probe_error": probe_error,
            "environment": settings,
        }
        if args.json:
            print(json.dumps(info, indent=1))
            return 0 if probed else 1
        print(f"library            {info['library']}")
        print(f"source hash        {info['source_hash']}")
        print(f"active here        {'yes' if active_here else 'no (this process was not started with LD_PRELOAD)'}")
        print("environment        " + (", ".join(f"{k}={v}" for k, v in settings.items()) or "(no MARL_ALLOC_* set)"))
        cfg = info["config_in_this_process"] or info["config_under_preload"]
        if cfg is None:
            print(f"preload probe      FAILED: {probe_error}")
            return 1
        source = "this process" if active_here else "a preloaded probe process"
        print(f"configuration      (as seen by {source})")
        print(f"  threshold        {cfg['threshold_bytes']} B")
        print(f"  process tier     {cfg['process_tier']}")
        print(f"  fast limit       {cfg['fast_limit_bytes'] or 'none'}")
        for name in ("fast", "slow"):
            t = cfg[name]
            backing = t["backing"]
            if backing == "numa":
                backing += f" node {t['numa_node']}"
            elif backing == "file":
                backing += f" in {t['path']} ({t['fs_type']}, DAX: {'yes' if t['dax'] else 'no'})"
            state = "available" if t["available"] else f"UNAVAILABLE: {t['error']}"
            print(f"  {name} tier        {backing}, reserve {t['reserve_bytes'] / 2**30:.1f} GiB, {state}")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
