"""Run a model once on random inputs and write its workload graph as JSON. Examples:
marl-gym extract mypkg.nets:make_net --input-shape 1,3,224,224 -o net.json
marl-gym extract --zoo resnet50 -o resnet50.json
marl-gym extract --zoo llama_1b_serve -o llama_1b_serve.json   (any shipped zoo graph, at its own batch)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from marl_gym.workloads.graph import WorkloadGraph
from marl_lab.cli import CLIError

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32")


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        nargs="?",
        metavar="MODULE:FACTORY",
        help="a callable returning a torch.nn.Module (called without arguments), or an nn.Module object",
    )
    p.add_argument(
        "--zoo",
        metavar="NAME",
        help="rebuild a shipped zoo graph instead (resnet50, gpt2_train, llama_1b_serve, ...: marl-gym workloads)",
    )
    p.add_argument(
        "--input-shape",
        action="append",
        metavar="SHAPE",
        help="shape of one positional input, e.g. 1,3,224,224; repeat for several inputs",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=DTYPES,
        help="input dtype (default float32); a float dtype also converts the model; integer inputs are zeros",
    )
    p.add_argument("--name", help="graph name (default: the factory's or zoo model's name)")
    p.add_argument("--batch-size", type=int, help="zoo only: batch size to extract at (default: the graph's own)")
    p.add_argument("-o", "--output", metavar="PATH", help="write the graph JSON here (default: print a summary only)")


def _zoo_graph(args: argparse.Namespace) -> WorkloadGraph:
    from marl_gym.workloads.zoo import ZOO_NAMES, extract_zoo

    if args.zoo not in ZOO_NAMES:
        raise CLIError(f"unknown zoo graph {args.zoo!r}; expected one of {', '.join(ZOO_NAMES)}")
    if args.input_shape:
        raise CLIError("--input-shape does not apply to --zoo graphs (they bring their own inputs)")
    if args.batch_size is not None and args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    graph = extract_zoo(args.zoo, batch_size=args.batch_size)
    if args.name:
        graph = WorkloadGraph(args.name, graph.nodes, graph.edges, graph.batch_size, graph.meta)
    return graph


def _factory_graph(args: argparse.Namespace) -> WorkloadGraph:
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
    return extract(module, inputs, name=name, meta={"factory": args.model}, factory=args.model)


def run(args: argparse.Namespace) -> int:
    if bool(args.model) == bool(args.zoo):
        raise CLIError("give either MODULE:FACTORY or --zoo NAME (exactly one)")
    graph = _zoo_graph(args) if args.zoo else _factory_graph(args)
    print(graph.summary())
    if args.output:
        graph.to_json(args.output)
        print(f"wrote {args.output}")
    return 0
