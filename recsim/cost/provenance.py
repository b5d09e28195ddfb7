"""Which calibrations a system is costed with that were not measured on its own hardware.

DESIGN §6: each hardware YAML names its calibration source. A device without a block is still
costed, with a documented default: an accelerator with the A100 GEMM and gather fits
(``UNCALIBRATED_GEMM``, ``UNCALIBRATED_GATHER``), a fabric level with NCCL's tuning model
(``DEFAULT_NVLINK``, ``DEFAULT_PCIE``, ``DEFAULT_NETWORK``, ``DEFAULT_SOCKET``, ``DEFAULT_NVLS``);
a block may say it was fitted on another device (``transferred_from``, as an ``extends:`` of a
different accelerator inherits it). ``calibration_note`` says each one a run reads, in one line of
the result's notes; ``device_defaults`` gives the rows ``recsim hw show`` prints for a device
without a block (and for a CPU without ``line_fill_buffers``, the Skylake-class default). Worked
out once per run from the system (a few attribute reads), never per op.
"""

from __future__ import annotations

from recsim.cost.collectives.base import (
    DEFAULT_NETWORK,
    DEFAULT_NVLINK,
    DEFAULT_PCIE,
    DEFAULT_SOCKET,
    Level,
    node_level_calibration,
)
from recsim.cost.compute import UNCALIBRATED_GEMM
from recsim.cost.embedding.gpu import UNCALIBRATED_GATHER
from recsim.hardware.calibration import CollectiveCalibration
from recsim.hardware.devices import DEFAULT_LINE_FILL_BUFFERS, Accelerator, Cpu, Device, Nic, Switch
from recsim.hardware.system import System

_WHERE = "recsim.cost.collectives.base"

#: The collective defaults by identity, with what each is (``recsim.cost.collectives.base``).
_DEFAULTS: tuple[tuple[CollectiveCalibration, str, str], ...] = (
    (DEFAULT_NVLINK, "DEFAULT_NVLINK", "NCCL's tuning model for NVLink"),
    (DEFAULT_PCIE, "DEFAULT_PCIE", "NCCL's tuning model for PCIe"),
    (DEFAULT_NETWORK, "DEFAULT_NETWORK", "NCCL's tuning model for an RDMA network"),
    (DEFAULT_SOCKET, "DEFAULT_SOCKET", "NCCL's network model over its socket transport"),
)


def _default_name(cal: CollectiveCalibration) -> tuple[str, str] | None:
    """(constant name, what it is) of a collective default, None for a device's own block."""
    return next(((name, what) for default, name, what in _DEFAULTS if cal is default), None)


#: An accelerator's fits and the default each falls back to: (label, calibration key, default,
#: where the default is defined).
_ACCELERATOR_DEFAULTS = (
    ("GEMM", "gemm", UNCALIBRATED_GEMM, "UNCALIBRATED_GEMM, recsim.cost.compute"),
    ("embedding gather", "gather", UNCALIBRATED_GATHER, "UNCALIBRATED_GATHER, recsim.cost.embedding.gpu"),
)


def _accelerator_fits(acc: Accelerator) -> list[tuple[str, str]]:
    """(compact, full) phrase of each GEMM or gather fit ``acc`` is costed with that was not
    measured on it: a default where it has no block, a block's ``transferred_from``."""
    out: list[tuple[str, str]] = []
    cal = acc.calibration
    for label, key, default, where in _ACCELERATOR_DEFAULTS:
        block = getattr(cal, key) if cal is not None else None
        if block is None:
            out.append(
                (
                    f"{key}: {default.transferred_from} fit ({where.split(',')[0]})",
                    f"{label} with the {default.transferred_from} fit ({where}; {default.source}): "
                    f"{acc.name} has no calibration.{key}",
                )
            )
        elif block.transferred_from:
            out.append(
                (
                    f"{key}: {block.transferred_from} fit",
                    f"{label} with the {block.transferred_from} fit ({block.source}): {acc.name}'s "
                    f"calibration.{key}.transferred_from",
                )
            )
    return out


def _scale_up(system: System) -> list[tuple[str, str]]:
    """The scale-up level's defaults, where the node's accelerators talk to each other."""
    node = system.node
    if node.num_accelerators < 2:
        return []
    up = node.scale_up
    cal = node_level_calibration(node, Level.INTRA)
    fabric = up.fabric if up is not None else "pcie"
    switch = up.switch if up is not None else None
    acc = system.accelerator
    link = acc.nvlink.link if acc is not None and acc.nvlink is not None and fabric != "pcie" else None
    # NCCL's NVLink figures (its default, or an NVSwitch's fit) on another family's link (AMD's
    # Infinity Fabric): nothing measured on that link; a ``scale_up.calibration`` is the user's own.
    transferred = (
        link is not None
        and link.family != "nvlink"
        and (cal is DEFAULT_NVLINK or (switch is not None and cal is switch.calibration))
    )
    onto = f", transferred to {link.name} (family {link.family})" if transferred and link else ""
    out: list[tuple[str, str]] = []
    short_onto = f" on {link.name} (family {link.family})" if transferred and link else ""
    found = _default_name(cal)
    if found is not None:
        name, what = found
        owner = f"{switch.name} has" if switch is not None else f"the {fabric} fabric has"
        out.append(
            (
                f"scale-up: {name}{short_onto}",
                f"scale-up collectives with {name} ({what}, {_WHERE}{onto}): {owner} no calibration",
            )
        )
    elif cal.transferred_from:
        owner = (
            f"{switch.name}'s" if switch is not None and cal is switch.calibration else "the node's scale_up"
        )
        out.append(
            (
                f"scale-up: {cal.transferred_from} fit{short_onto}",
                f"scale-up collectives with the {cal.transferred_from} fit ({cal.source}{onto}): {owner} "
                "calibration.transferred_from",
            )
        )
    elif transferred and switch is not None:
        out.append(
            (
                f"scale-up: {switch.name} fit{short_onto}",
                f"scale-up collectives with {switch.name}'s NVLink fit{onto}",
            )
        )
    if system.num_nodes == 1 and switch is not None and switch.in_network_reduction and cal.nvls is None:
        out.append(
            (
                "NVLS: DEFAULT_NVLS",
                f"NVLS, where chosen, with DEFAULT_NVLS (the nvswitch-gen3 fit, {_WHERE}): {switch.name}'s "
                "calibration has no nvls",
            )
        )
    return out


def _scale_out(system: System) -> list[tuple[str, str]]:
    """The scale-out level's default or transferred fit, where traffic leaves a node."""
    group = system.node.scale_out_nics
    if system.num_nodes < 2 or group is None:
        return []
    cal = node_level_calibration(system.node, Level.INTER)
    found = _default_name(cal)
    if found is None:
        if cal.transferred_from:
            return [
                (
                    f"scale-out: {cal.transferred_from} fit",
                    f"scale-out collectives with the {cal.transferred_from} fit ({cal.source}): "
                    f"{group.device.name}'s calibration.transferred_from",
                )
            ]
        return []
    name, what = found
    return [
        (
            f"scale-out: {name}",
            f"scale-out collectives with {name} ({what}, {_WHERE}): {group.device.name} has no calibration",
        )
    ]


def _said(system: System) -> list[tuple[str, str]]:
    said: list[tuple[str, str]] = []
    if system.accelerator is not None:
        said += _accelerator_fits(system.accelerator)
    return said + _scale_up(system) + _scale_out(system)


def calibration_defaults(system: System) -> list[str]:
    """Every calibration a run on ``system`` reads that was not measured on its hardware (a
    default, or a block transferred from another device), one phrase each, with its source."""
    return [full for _, full in _said(system)]


def calibration_note(system: System) -> str | None:
    """``calibration_defaults`` as one compact line of a result's notes, a few words an item (it
    repeats on every run and sweep row; ``recsim hw show`` lists the sources); None where none."""
    said = [short for short, _ in _said(system)]
    if not said:
        return None
    return "calibrations not measured on this hardware: " + "; ".join(said)


def device_defaults(device: Device) -> list[tuple[str, str]]:
    """(``hw show`` row label, value) for each calibration ``device`` lacks and the default it is
    costed with instead; a block of its own is shown as its fields are."""
    rows: list[tuple[str, str]] = []
    if isinstance(device, Accelerator):
        cal = device.calibration
        for _, key, default, where in _ACCELERATOR_DEFAULTS:
            if cal is None or getattr(cal, key) is None:
                rows.append(
                    (
                        f"calibration.{key}",
                        f"none: costed with the {default.transferred_from} fit ({where}; {default.source})",
                    )
                )
    elif isinstance(device, Nic) and device.calibration is None:
        name = "DEFAULT_NETWORK" if device.rdma else "DEFAULT_SOCKET"
        rows.append(("calibration", f"none: collectives costed with {name} ({_WHERE})"))
    elif isinstance(device, Switch) and device.fabric == "nvlink" and device.calibration is None:
        rows.append(("calibration", f"none: collectives costed with DEFAULT_NVLINK ({_WHERE})"))
    elif isinstance(device, Cpu) and device.line_fill_buffers is None:
        rows.append(
            (
                "line_fill_buffers",
                f"none: host lookups costed with {DEFAULT_LINE_FILL_BUFFERS}, Skylake's L1D fill buffers "
                "(DEFAULT_LINE_FILL_BUFFERS, recsim.hardware.devices; Intel optimization manual)",
            )
        )
    return rows
