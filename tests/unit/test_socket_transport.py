"""A NIC's calibration block names the transport it describes, and it must be the NIC's own: a NIC
without RDMA cannot be costed with an RDMA NIC's constants."""

from __future__ import annotations

import pytest

from recsim.errors import ConfigError
from recsim.hardware.library import HardwareLibrary
from tests.conftest import FIXTURES

MINI = FIXTURES / "minilib"


def _block(transport: str | None) -> str:
    return (
        "calibration:\n  source: test\n"
        + (f"  transport: {transport}\n" if transport else "")
        + "  protocols:\n    simple: {base_latency: 8 us, step_latency: 9 us, efficiency: 0.9}\n"
    )


def _nic(name: str, rdma: bool, transport: str | None) -> str:
    text = (MINI / "devices/tiny-nic.yaml").read_text().replace("name: tiny-nic", f"name: {name}")
    return text.replace("rdma: true", f"rdma: {str(rdma).lower()}") + _block(transport)


@pytest.mark.parametrize(
    ("rdma", "transport", "fragment"),
    [
        (False, None, "calibration.transport is 'rdma' but the NIC has rdma: false"),
        (False, "rdma", "calibration.transport is 'rdma' but the NIC has rdma: false"),
        (True, "socket", "calibration.transport is 'socket' but the NIC has rdma: true"),
    ],
)
def test_a_calibration_of_the_other_transport_is_refused(tmp_path, rdma, transport, fragment):
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices/x.yaml").write_text(_nic("x", rdma, transport))
    with pytest.raises(ConfigError) as info:
        HardwareLibrary([tmp_path, MINI]).load("nic", "x")
    message = str(info.value)
    assert fragment in message
    assert "x.yaml" in message and "\n" not in message


def test_a_nic_without_rdma_cannot_inherit_an_rdma_nics_constants(tmp_path):
    # eth-100g extends roce-100g (same card): had roce-100g a calibration block, eth-100g would have
    # been costed with it, as RDMA (a tester found eth-100g exactly as fast as roce-100g).
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices/parent.yaml").write_text(_nic("parent", True, None))
    child = "kind: nic\nextends: parent\nname: child\nrdma: false\n"
    (tmp_path / "devices/child.yaml").write_text(child)
    lib = HardwareLibrary([tmp_path, MINI])
    with pytest.raises(ConfigError, match="rdma: false"):
        lib.load("nic", "child")
    (tmp_path / "devices/child.yaml").write_text(child + _block("socket"))
    loaded = HardwareLibrary([tmp_path, MINI]).load("nic", "child").spec.calibration
    assert loaded is not None and loaded.transport == "socket"
