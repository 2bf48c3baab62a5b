"""Measure a host's memory tiers into a system file, fit the model to native runs, start a search from it.

    from marl_gym.calibrate import make_plan, measure_host, build_system, write_system_file
    raw = measure_host(make_plan(fast="anon", slow="numa:1", workload="resnet50"))
    system, calibration = build_system(raw)
    write_system_file("host.toml", system, calibration)       # gym.make(..., system="host.toml")

    fit = fit_parameters(graph, "host.toml", placements, measured_s, heldout=[...])   # see fit.py

The command line is `marl-gym calibrate` (marl_lab/commands/calibrate.py); docs/calibrate.md explains the
measurements. The model's best placement on a calibrated system, to start a native search from, is
`agents.model_start.model_start_placement` (it needs the model-based optimizers, which live in agents/).
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FREE_PARAMETERS": "fit",
    "FitResult": "fit",
    "apply_parameters": "fit",
    "fit_parameters": "fit",
    "predict": "fit",
    "probe_placements": "fit",
    "split_heldout": "fit",
    "CalibrationError": "measure",
    "make_plan": "measure",
    "measure_host": "measure",
    "build_system": "system_file",
    "read_calibration": "system_file",
    "tier_agreement": "system_file",
    "write_system_file": "system_file",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Lazy exports: `marl-gym calibrate --help` imports this package and must not pay for scipy and the model."""
    if name in _EXPORTS:
        return getattr(import_module(f"marl_gym.calibrate.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'marl_gym.calibrate' has no attribute {name!r}")
