"""The hardware library: device and system documents (``hardware/devices/``, ``hardware/systems/``).

Devices may sit in any sub-folder of ``devices/``; users add roots with ``$RECSIM_HARDWARE_PATH``.
See ``recsim.config.library`` for how names, paths, ``extends:`` and overrides resolve.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from recsim.config.library import DocumentLibrary, Resolved, shipped_data
from recsim.config.loader import Override, Referable
from recsim.config.tree import KeyPath
from recsim.hardware.devices import DEVICE_KINDS, Device
from recsim.hardware.platform import expand_platform
from recsim.hardware.system import System

__all__ = ["SCHEMAS", "HardwareLibrary", "Resolved", "shipped_root"]

SCHEMAS: dict[str, type[Referable]] = {**DEVICE_KINDS, "system": System}


def shipped_root() -> Path:
    """The hardware library that ships with recsim."""
    return shipped_data("hardware")


class HardwareLibrary(DocumentLibrary):
    """Devices and systems."""

    sections: ClassVar[dict[str, str]] = {**{k: "devices" for k in DEVICE_KINDS}, "system": "systems"}
    schemas: ClassVar[dict[str, type[Referable]]] = SCHEMAS
    env_var: ClassVar[str] = "RECSIM_HARDWARE_PATH"
    shipped: ClassVar[str] = "hardware"
    list_command: ClassVar[str] = "recsim hw list"

    def expand(self, kind: str, path: KeyPath, value: Any) -> dict[str, Any] | None:
        """``node.platform`` left out, null or ``generic`` is the generic platform's mapping, so an
        override may change one of its fields (``recsim.hardware.platform.expand_platform``)."""
        if kind == "system" and path == ("node", "platform"):
            return expand_platform(value)
        return None

    def device_names(self, kind: str) -> list[str]:
        """Names of the library devices of ``kind``."""
        return self.names_of_kind(kind)

    def system(self, ref: str | Path, overrides: Iterable[Override] = ()) -> System:
        """A validated system by name or path, with overrides."""
        spec: System = self.load("system", ref, overrides).spec
        return spec

    def device(self, kind: str, ref: str | Path) -> Device:
        """A validated device of ``kind`` by name or path."""
        spec: Device = self.load(kind, ref).spec
        return spec
