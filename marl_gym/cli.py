"""The `marl-gym` command line.

Subcommands are `Command` records in `COMMANDS`; add one with `register(Command(...))` from this module
or from a module listed in `COMMAND_MODULES` (imported when the parser is built, so a subcommand's heavy
imports stay out of the others' start-up time). Each command configures its own argparse sub-parser and
runs with the parsed namespace, returning an exit status (None = 0). Errors a user can fix raise
`CLIError` (or `WorkloadError`) and are printed as one line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from marl_gym.workloads.graph import WorkloadError, WorkloadGraph, _fmt_bytes, peak_live_activation_bytes


class CLIError(Exception):
    """A mistake in the command line: the message says what was wrong and what was expected."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None


COMMANDS: dict[str, Command] = {}
"""Subcommands by name, in the order `--help` lists them."""

COMMAND_MODULES: tuple[str, ...] = ("marl_gym.cli_compare",)
"""Modules imported before the parser is built; each calls `register()` for its own subcommands."""


def register(command: Command) -> Command:
    """Add a subcommand (a name may be registered only once)."""
    if command.name in COMMANDS:
        raise ValueError(f"marl-gym subcommand {command.name!r} is already registered")
    COMMANDS[command.name] = command
    return command


# ------------------------------------------------------------------------- workloads
def _configure_workloads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=1, help="scale activations and FLOPs to this batch (default 1)")


def _run_workloads(args: argparse.Namespace) -> int:
    from marl_gym.workloads.registry import load, names

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    header = f"{'name':<18} {'nodes':>6} {'weights':>11} {'peak activations':>17} {'GFLOPs':>8}"
    print(header)
    print("-" * len(header))
    for name in names():
        g = load(name).with_batch_size(args.batch_size)
        peak = peak_live_activation_bytes(g)
        print(
            f"{name:<18} {len(g.nodes):>6} {_fmt_bytes(g.total_weight_bytes):>11} "
            f"{_fmt_bytes(peak):>17} {g.total_flops / 1e9:>8.2f}"
        )
    return 0


register(
    Command(
        "workloads",
        "list the shipped zoo workload graphs",
        _configure_workloads,
        _run_workloads,
        "List the zoo graphs shipped with marl-gym: node count, weight bytes, peak live activation bytes "
        "(all activations in one tier) and GFLOPs (multiply-add = 2 FLOPs), at batch 1 unless --batch-size.",
    )
)


# --------------------------------------------------------------------------- extract
_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32")


def parse_shape(text: str) -> tuple[int, ...]:
    """'1,3,224,224' -> (1, 3, 224, 224); anything else raises `CLIError`."""
    parts = [s.strip() for s in text.replace("x", ",").split(",")]
    try:
        shape = tuple(int(s) for s in parts)
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise CLIError(f"bad --input-shape {text!r}: expected comma-separated positive integers, e.g. 1,3,224,224")
    return shape


def load_factory(spec: str) -> object:
    """Import `MODULE:FACTORY` (FACTORY may be dotted, e.g. `pkg.mod:Class.build`) and return the object."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"bad model {spec!r}: expected MODULE:FACTORY, e.g. mypkg.models:make_net")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules in the current directory are importable
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise CLIError(f"cannot import module {module_name!r} (from {spec!r}): {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CLIError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})") from None
    return obj


def _configure_extract(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        nargs="?",
        metavar="MODULE:FACTORY",
        help="a callable returning a torch.nn.Module (called without arguments), or an nn.Module object",
    )
    p.add_argument("--zoo", metavar="NAME", help="extract a zoo model instead (resnet50, bert_base, ...)")
    p.add_argument(
        "--input-shape",
        action="append",
        metavar="SHAPE",
        help="shape of one positional input, e.g. 1,3,224,224; repeat for several inputs",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=_DTYPES,
        help="input dtype (default float32); a float dtype also converts the model; integer inputs are zeros",
    )
    p.add_argument("--name", help="graph name (default: the factory's or zoo model's name)")
    p.add_argument("--batch-size", type=int, help="zoo only: batch size to extract at (default 1)")
    p.add_argument("-o", "--output", metavar="PATH", help="write the graph JSON here (default: print a summary only)")


def _run_extract(args: argparse.Namespace) -> int:
    if bool(args.model) == bool(args.zoo):
        raise CLIError("give either MODULE:FACTORY or --zoo NAME (exactly one)")
    if args.zoo:
        from marl_gym.workloads.models import MODEL_NAMES
        from marl_gym.workloads.zoo import extract_zoo

        if args.zoo not in MODEL_NAMES:
            raise CLIError(f"unknown zoo model {args.zoo!r}; expected one of {', '.join(MODEL_NAMES)}")
        if args.input_shape:
            raise CLIError("--input-shape does not apply to --zoo models (they bring their own inputs)")
        graph = extract_zoo(args.zoo, batch_size=args.batch_size or 1)
        if args.name:
            graph = WorkloadGraph(args.name, graph.nodes, graph.edges, graph.batch_size, graph.meta)
    else:
        if args.batch_size is not None:
            raise CLIError("--batch-size applies to --zoo only; set the batch with --input-shape")
        if not args.input_shape:
            raise CLIError("--input-shape is required with MODULE:FACTORY, e.g. --input-shape 1,3,224,224")
        shapes = [parse_shape(s) for s in args.input_shape]
        import torch

        from marl_gym.workloads.extract import extract

        factory = load_factory(args.model)
        module = factory if isinstance(factory, torch.nn.Module) else None
        if module is None:
            if not callable(factory):
                raise CLIError(f"{args.model} is neither an nn.Module nor callable")
            module = factory()
            if not isinstance(module, torch.nn.Module):
                raise CLIError(f"{args.model}() returned {type(module).__name__}, expected a torch.nn.Module")
        dtype = getattr(torch, args.dtype)
        gen = torch.Generator().manual_seed(0)
        if dtype.is_floating_point:
            module = module.to(dtype)
            inputs = tuple(torch.randn(s, generator=gen).to(dtype) for s in shapes)
        else:
            inputs = tuple(torch.zeros(s, dtype=dtype) for s in shapes)
        module.eval()
        name = args.name or args.model.partition(":")[2]
        graph = extract(module, inputs, name=name, meta={"factory": args.model}, factory=args.model)
    print(graph.summary())
    if args.output:
        graph.to_json(args.output)
        print(f"wrote {args.output}")
    return 0


register(
    Command(
        "extract",
        "extract a workload graph from a PyTorch model",
        _configure_extract,
        _run_extract,
        "Run a model once on random inputs and write its workload graph as JSON. Examples:\n"
        "  marl-gym extract mypkg.nets:make_net --input-shape 1,3,224,224 -o net.json\n"
        "  marl-gym extract --zoo resnet50 -o resnet50.json",
    )
)


# ------------------------------------------------------------------------------ show
def _configure_show(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "graph",
        metavar="GRAPH",
        help="a zoo name (see `marl-gym workloads`) or a graph .json file; append @tensor for per-tensor granularity",
    )
    p.add_argument("--nodes", action="store_true", help="also list every node")


def _run_show(args: argparse.Namespace) -> int:
    from marl_gym.workloads.graph import WorkloadError
    from marl_gym.workloads.registry import names, resolve

    target = args.graph
    base = target[: -len("@tensor")] if target.endswith("@tensor") else target
    if base not in names() and not Path(base).exists():
        raise CLIError(f"{base!r} is neither a zoo workload ({', '.join(names())}) nor an existing file")
    try:
        graph = resolve(target)
    except WorkloadError as exc:
        raise CLIError(str(exc)) from exc
    print(graph.summary())
    if args.nodes:
        preds = graph.predecessors()
        print(
            f"\n{'step':>5} {'name':<48} {'op':<10} {'weights':>10} {'output':>10} {'MFLOP':>9} {'last use':>8}  inputs"
        )
        for i, n in enumerate(graph.nodes):
            print(
                f"{i:>5} {n.name:<48} {n.op:<10} {_fmt_bytes(n.weight_bytes):>10} {_fmt_bytes(n.output_bytes):>10} "
                f"{n.flops / 1e6:>9.2f} {n.last_use:>8}  {','.join(map(str, preds[i]))}"
            )
    return 0


register(
    Command(
        "show",
        "print a workload graph's summary",
        _configure_show,
        _run_show,
        "Print the summary of a zoo workload or a graph JSON file (nodes, weights, activations, FLOPs, ops).",
    )
)


# ------------------------------------------- subcommands implemented in their own modules
for _name, _module, _help in (
    ("calibrate", "marl_gym.calibrate.cli", "measure this host's memory tiers into a system file, or fit the model"),
    ("exec", "marl_gym.deploy.exec_cli", "run a command under the tiering allocator, configured for a placement"),
):
    _mod = importlib.import_module(_module)
    register(Command(_name, _help, _mod.add_arguments, _mod.run, _mod.__doc__))


# ------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name)
    from marl_gym import __version__

    parser = argparse.ArgumentParser(
        prog="marl-gym",
        description="Learned placement of deep-learning memory on fast + slow memory systems.",
    )
    parser.add_argument("--version", action="version", version=f"marl-gym {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS.values():
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.configure(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "_command", None)
    if command is None:
        parser.print_help()
        return 2
    try:
        return int(command.run(args) or 0)
    except (CLIError, WorkloadError) as exc:
        print(f"marl-gym {command.name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
