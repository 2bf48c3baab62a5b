"""Rebuilding the PyTorch module a workload graph was extracted from, in another process.

A graph made by `marl_gym.workloads.extract(..., factory="pkg.mod:make_net")` or by
``marl-gym extract pkg.mod:make_net`` carries a recipe in ``meta["rebuild"]``::

    {"version": 1, "factory": "pkg.mod:make_net", "source_file": "/abs/pkg/mod.py", "kwargs": {...},
     "args": [{"shape": [1, 3, 32, 32], "dtype": "float32"}], "kwarg_inputs": {}, "batch_size": 1,
     "seed": 0, "dtype": "float32"}

`build_for_graph` follows it: seed torch, call the factory with `kwargs` (it returns an ``nn.Module``, or
``(module, inputs)``), convert floating parameters to `dtype`, and make inputs of the recorded shapes and
dtypes (floating: standard normal from a generator seeded with ``seed + 1``; integer and bool: zeros). A
graph at another batch size than it was extracted at (`WorkloadGraph.with_batch_size`) gets inputs whose
first dimension is scaled to match. Zoo graphs (``meta["zoo"]``) rebuild from `marl_gym.workloads.models`.

`check_rebuildable` resolves the factory without calling it, so a graph that cannot be rebuilt is a
`RebuildError` (a ValueError) in the calling process, before any worker starts. A factory is imported by
module name first; when that module is not importable where the graph is used (a script, a test helper),
the recorded ``source_file`` is loaded instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RECIPE_VERSION = 1


class RebuildError(ValueError):
    """A graph records no usable way to rebuild its module, or the recipe is broken; the message says which."""


def _import_target(target: str, source_file: str | None, spec: str) -> Any:
    if target.endswith(".py"):
        return _load_file(Path(target), spec)
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        if source_file and Path(source_file).is_file():
            return _load_file(Path(source_file), spec, name=target)
        if os.getcwd() not in sys.path:  # like `python -m`: modules in the current directory
            sys.path.insert(0, os.getcwd())
            try:
                return importlib.import_module(target)
            except ImportError:
                pass
        raise RebuildError(f"cannot import module {target!r} of model factory {spec!r}: {exc}") from exc


def _load_file(path: Path, spec: str, name: str | None = None) -> Any:
    if not path.is_file():
        raise RebuildError(f"model factory {spec!r}: file {path} does not exist")
    mod_name = name or f"_marl_model_{abs(hash(str(path.resolve())))}"
    if mod_name in sys.modules and getattr(sys.modules[mod_name], "__file__", None) == str(path):
        return sys.modules[mod_name]
    mod_spec = importlib.util.spec_from_file_location(mod_name, path)
    if mod_spec is None or mod_spec.loader is None:
        raise RebuildError(f"model factory {spec!r}: cannot load {path}")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_name] = module
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise RebuildError(f"model factory {spec!r}: loading {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_factory(spec: str, source_file: str | None = None) -> Any:
    """'pkg.module:function' (the attribute may be dotted) or '/path/file.py:function' -> the callable."""
    if not isinstance(spec, str):
        raise RebuildError(f"a model factory is a 'module:function' string, got {type(spec).__name__}")
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise RebuildError(f"model factory {spec!r} must look like 'package.module:function' or 'file.py:function'")
    obj = _import_target(target, source_file, spec)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise RebuildError(f"model factory {spec!r}: {target!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise RebuildError(f"model factory {spec!r} is not callable")
    return obj


def factory_spec(factory: Any) -> tuple[str, str | None]:
    """('module:qualname', source file) of a callable that a fresh process can import again."""
    import inspect

    if isinstance(factory, str):
        target = factory.rpartition(":")[0]
        if not target or target.endswith(".py"):
            return factory, None
        try:
            found = importlib.util.find_spec(target)
        except (ImportError, ValueError):
            found = None
        origin = getattr(found, "origin", None)
        return factory, (str(Path(origin).resolve()) if origin and origin not in ("built-in", "frozen") else None)
    qualname = getattr(factory, "__qualname__", "")
    module = getattr(factory, "__module__", None)
    if not callable(factory) or not module or not qualname or "<" in qualname:
        raise RebuildError(
            f"factory {factory!r} cannot be found again by another process: pass a module-level function "
            "(or its 'module:function' name), not a lambda, a nested function or an object"
        )
    try:
        source = inspect.getsourcefile(factory)
    except TypeError:
        source = None
    if module == "__main__":
        if not source:
            raise RebuildError("a factory defined in __main__ needs a source file to be rebuilt from")
        return f"{Path(source).resolve()}:{qualname}", None
    return f"{module}:{qualname}", (str(Path(source).resolve()) if source else None)


def _input_spec(value: Any, where: str) -> dict[str, Any]:
    import torch

    if not isinstance(value, torch.Tensor):
        raise RebuildError(
            f"input {where} is a {type(value).__name__}, not a tensor: a rebuild recipe records tensor "
            "shapes and dtypes only (make the factory return (module, inputs) instead)"
        )
    return {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}


def make_recipe(
    factory: Any,
    args: tuple,
    kwargs: Mapping[str, Any],
    module: Any,
    batch_size: int,
    factory_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``meta["rebuild"]`` recipe of a module made by `factory(**factory_kwargs)` and run on (args, kwargs)."""
    import json

    spec, source = factory_spec(factory)
    fkw = dict(factory_kwargs or {})
    try:
        json.dumps(fkw)
    except TypeError as exc:
        raise RebuildError(f"factory_kwargs must be JSON values (numbers, strings, lists, dicts): {exc}") from exc
    floating = {str(p.dtype).removeprefix("torch.") for p in module.parameters() if p.is_floating_point()}
    return {
        "version": RECIPE_VERSION,
        "factory": spec,
        "source_file": source,
        "kwargs": fkw,
        "args": [_input_spec(a, f"#{k}") for k, a in enumerate(args)],
        "kwarg_inputs": {k: _input_spec(v, repr(k)) for k, v in kwargs.items()},
        "batch_size": int(batch_size),
        "seed": int(seed),
        "dtype": floating.pop() if len(floating) == 1 else None,
    }


def check_rebuildable(graph: Any, model: str | None = None) -> str:
    """How `graph`'s module will be rebuilt ('model', 'recipe' or 'zoo'); RebuildError when it cannot be.

    Resolves (imports) the factory without calling it, in this process.
    """
    from marl_gym.workloads.models import MODEL_NAMES

    if model is not None:
        if ":" in model:
            load_factory(model)
            return "model"
        if model not in MODEL_NAMES:
            raise RebuildError(
                f"model {model!r} is neither a zoo model ({', '.join(MODEL_NAMES)}) nor a 'module:function' factory"
            )
        return "zoo"
    recipe = graph.meta.get("rebuild")
    if recipe is not None:
        _check_recipe(recipe, graph.name)
        load_factory(recipe["factory"], recipe.get("source_file"))
        return "recipe"
    zoo = graph.meta.get("zoo", graph.name)
    if zoo in MODEL_NAMES:
        return "zoo"
    raise RebuildError(
        f"workload graph {graph.name!r} records no way to rebuild its module: extract it with "
        "extract(module, inputs, factory='pkg.module:function') or `marl-gym extract pkg.module:function "
        "--input-shape ...`, or pass model='pkg.module:function' (returning (module, inputs)) to the native backend"
    )


def _check_recipe(recipe: Any, name: str) -> None:
    if not isinstance(recipe, Mapping):
        raise RebuildError(f"graph {name!r}: meta['rebuild'] must be an object, got {type(recipe).__name__}")
    if recipe.get("version") != RECIPE_VERSION:
        raise RebuildError(
            f"graph {name!r}: rebuild recipe version {recipe.get('version')!r} is not supported (expected {RECIPE_VERSION})"
        )
    for key in ("factory", "args", "kwarg_inputs", "kwargs"):
        if key not in recipe:
            raise RebuildError(f"graph {name!r}: rebuild recipe lacks {key!r}")
    for spec in [*recipe["args"], *recipe["kwarg_inputs"].values()]:
        if not isinstance(spec, Mapping) or not isinstance(spec.get("shape"), list) or "dtype" not in spec:
            raise RebuildError(f"graph {name!r}: rebuild recipe input {spec!r} needs a shape list and a dtype")


def _tensor(torch: Any, spec: Mapping[str, Any], gen: Any, batch: tuple[int, int] | None) -> Any:
    dtype = getattr(torch, str(spec["dtype"]), None)
    if not isinstance(dtype, torch.dtype):
        raise RebuildError(f"unknown input dtype {spec['dtype']!r}")
    shape = [int(d) for d in spec["shape"]]
    if batch is not None and shape and shape[0] == batch[0]:
        shape[0] = batch[1]
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    return torch.zeros(shape, dtype=dtype)


def build_for_graph(
    graph: Any, model: str | None = None, model_kwargs: Mapping[str, Any] | None = None, seed: int = 0
) -> tuple[Any, tuple[tuple, dict[str, Any]]]:
    """(module in eval mode, (args, kwargs)) for `graph`: from `model`, the graph's recipe, or the zoo."""
    import torch

    from marl_gym.workloads.models import build_model

    how = check_rebuildable(graph, model)
    if how == "model":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = load_factory(model)(**dict(model_kwargs or {}))  # type: ignore[arg-type]
        if not (isinstance(out, tuple) and len(out) == 2):
            raise RebuildError(f"model factory {model!r} must return (module, example_inputs)")
        module, inputs = out
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        return module.eval(), (args, {})
    if how == "zoo":
        name = model or graph.meta.get("zoo", graph.name)
        module, inputs = build_model(name, batch_size=graph.batch_size, seed=seed)
        return module.eval(), (tuple(inputs), {})
    recipe = graph.meta["rebuild"]
    rseed = int(recipe.get("seed", 0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(rseed)
        made = load_factory(recipe["factory"], recipe.get("source_file"))
        out = made if isinstance(made, torch.nn.Module) else made(**dict(recipe["kwargs"]))
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], torch.nn.Module):
        module, inputs = out
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        return module.eval(), (args, {})
    if not isinstance(out, torch.nn.Module):
        raise RebuildError(f"factory {recipe['factory']!r} returned {type(out).__name__}, expected a torch.nn.Module")
    dtype = recipe.get("dtype")
    if dtype and any(p.is_floating_point() and str(p.dtype) != f"torch.{dtype}" for p in out.parameters()):
        out = out.to(getattr(torch, dtype))
    gen = torch.Generator().manual_seed(rseed + 1)
    recorded = int(recipe.get("batch_size", graph.batch_size))
    batch = (recorded, int(graph.batch_size)) if recorded != graph.batch_size else None
    args = tuple(_tensor(torch, s, gen, batch) for s in recipe["args"])
    kwargs = {k: _tensor(torch, s, gen, batch) for k, s in recipe["kwarg_inputs"].items()}
    return out.eval(), (args, kwargs)
