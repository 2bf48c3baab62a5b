"""What fast and slow memory cost: device profiles, named systems and the analytic latency model."""

from marl_gym.memory.devices import DEVICES, PATTERNS, BandwidthCurve, Device, get_device
from marl_gym.memory.model import MODES, AnalyticModel
from marl_gym.memory.systems import (
    DEFAULT_SYSTEM,
    PRESETS,
    MemorySystem,
    MemorySystemError,
    get_system,
    systems,
)

__all__ = [
    "DEFAULT_SYSTEM",
    "DEVICES",
    "MODES",
    "PATTERNS",
    "PRESETS",
    "AnalyticModel",
    "BandwidthCurve",
    "Device",
    "MemorySystem",
    "MemorySystemError",
    "get_device",
    "get_system",
    "systems",
]
