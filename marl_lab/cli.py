"""The `marl-gym` command line.

Every subcommand is a module with `add_arguments(parser)`, `run(args) -> int | None` and a docstring (its
``--help`` description). Registering one is one line, here or in any module imported before `main` runs:

    register("report", "mypkg.report_cli", "summarise my runs")

A subcommand's module is imported only when that subcommand is parsed, so one command's heavy imports
(torch, agents, Ray) never slow another's start-up. Mistakes a user can fix raise `CLIError` (or
`WorkloadError`) and print as one line with exit status 2; a module may also report its own errors and
return 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from marl_gym.workloads.graph import WorkloadError


class CLIError(Exception):
    """A mistake in the command line: the message says what was wrong and what was expected."""


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    """Dotted name of the module implementing it (`add_arguments`, `run`, docstring)."""
    help: str
    """Its line in ``marl-gym --help``."""

    def load(self) -> ModuleType:
        module = importlib.import_module(self.module)
        for attr in ("add_arguments", "run"):
            if not callable(getattr(module, attr, None)):
                raise TypeError(f"marl-gym {self.name}: module {self.module} has no function {attr}()")
        return module


COMMANDS: dict[str, Command] = {}
"""Subcommands by name, in the order ``--help`` lists them."""


def register(name: str, module: str, help: str) -> Command:
    """Add subcommand `name`, implemented by `module` (a name may be registered only once)."""
    if name in COMMANDS:
        raise ValueError(f"marl-gym subcommand {name!r} is already registered (by {COMMANDS[name].module})")
    COMMANDS[name] = Command(name, module, help)
    return COMMANDS[name]


register("workloads", "marl_lab.commands.workloads", "list the shipped zoo workload graphs")
register("extract", "marl_lab.commands.extract", "extract a workload graph from a PyTorch model")
register("show", "marl_lab.commands.show", "print a workload graph's summary")
register("compare", "marl_lab.commands.compare", "compare agents (EGRL, SB3, random, greedy, rules, the MILP optimum)")
register(
    "calibrate", "marl_lab.commands.calibrate", "measure this host's memory tiers into a system file, or fit the model"
)
register("suite", "marl_lab.commands.suite", "build or list the benchmark suites (cached optima, rule gaps)")
register("leaderboard", "marl_lab.commands.leaderboard", "run every agent on a suite split at fixed budgets")
register("exec", "marl_lab.commands.exec", "run a command under the tiering allocator, configured for a placement")


def build_parser(configure: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the subcommands in `configure` (default: all) get their own arguments."""
    from marl_gym import __version__

    chosen = set(COMMANDS if configure is None else configure)
    parser = argparse.ArgumentParser(
        prog="marl-gym",
        description="Learned placement of deep-learning memory on fast + slow memory systems.",
    )
    parser.add_argument("--version", action="version", version=f"marl-gym {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS.values():
        module = cmd.load() if cmd.name in chosen else None
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=(module.__doc__ if module is not None else None) or cmd.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if module is not None:
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the top-level parser has no option taking a value, so the first plain word names the subcommand
    word = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([word] if word in COMMANDS else [])
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return int(run(args) or 0)
    except (CLIError, WorkloadError) as exc:
        print(f"marl-gym {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
