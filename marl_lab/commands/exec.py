"""`marl-gym exec`: run a command under the tiering allocator, configured for a placement.

    marl-gym exec --placement best.json --workload net.json [--system host.toml] [--slow numa:1] -- python server.py

The command starts with the allocator preloaded (LD_PRELOAD) and configured (tier backings, threshold,
optional fast-tier limit), and with MARL_GYM_PLACEMENT / MARL_GYM_WORKLOAD naming the placement and the
graph, so `marl_gym.deploy.apply(model)` in it needs no other argument. The backings default to what a
calibrated system file (`marl-gym calibrate -o host.toml`) recorded for its tiers. Before the command
starts, a small probe process checks that both tiers' backings can be set up on this host; the command's
exit status is returned (128 + N when it died of signal N).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from marl_gym.deploy import PLACEMENT_ENV, WORKLOAD_ENV, DeployError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--placement", required=True, metavar="JSON", help="placement file (Placement.save / agents)")
    p.add_argument("--workload", metavar="GRAPH", help="the placement's workload graph (JSON file or zoo name)")
    p.add_argument("--system", metavar="FILE", help="a calibrated system file: its tiers' backings are the defaults")
    p.add_argument("--fast", metavar="SPEC", help="fast-tier backing: anon, numa:N or file:/dir")
    p.add_argument("--slow", metavar="SPEC", help="slow-tier backing: anon, numa:N or file:/dir")
    p.add_argument("--threshold", metavar="BYTES", help="allocations below this stay in the system allocator")
    p.add_argument("--fast-limit", metavar="BYTES", help="fast-tier capacity (excess goes to slow, counted)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command to run")


def exec_env(args: argparse.Namespace, base: dict[str, str] | None = None) -> dict[str, str]:
    """The command's environment: allocator preloaded and configured, placement and workload named."""
    import allocator
    from marl_gym.backends.tiering import check_tiers
    from marl_gym.placement import Placement, PlacementError
    from marl_gym.workloads.graph import WorkloadError
    from marl_gym.workloads.registry import resolve

    graph = None
    if args.workload:
        try:
            graph = resolve(args.workload)
        except WorkloadError as exc:
            raise DeployError(str(exc)) from exc
    try:
        Placement.load(args.placement, graph)
    except PlacementError as exc:
        raise DeployError(str(exc)) from exc
    fast, slow = args.fast, args.slow
    if args.system:
        from marl_gym.calibrate.system_file import recorded_backings

        recorded = recorded_backings(args.system)
        fast = fast or recorded.get("fast")
        slow = slow or recorded.get("slow")
    env = allocator.preload_env(base, fast=fast, slow=slow, threshold=args.threshold, fast_limit=args.fast_limit)
    check_tiers(allocator.probe(env=env)["config"])
    env[PLACEMENT_ENV] = str(Path(args.placement).resolve())
    if args.workload:
        env[WORKLOAD_ENV] = str(Path(args.workload).resolve()) if Path(args.workload).exists() else args.workload
    return env


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ValueError as exc:  # DeployError, PlacementError, TierUnavailable: one line, exit status 2
        print(f"marl-gym exec: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise DeployError("no command given: marl-gym exec --placement p.json -- CMD [ARGS...]")
    env = exec_env(args, dict(os.environ))
    try:
        proc = subprocess.Popen(cmd, env=env)
    except OSError as exc:
        raise DeployError(f"cannot start {cmd[0]!r}: {exc}") from exc
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C already reaches the command (the terminal signals the whole foreground group): ignore it
        # here; a SIGTERM sent to us is passed on. Either way we wait for the command and return its status.
        def forward(signum: int, frame: object) -> None:
            proc.send_signal(signum)

        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, forward)
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 128 - code if code < 0 else code
