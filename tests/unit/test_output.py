"""``recsim.output``: user-named outputs are written whole or not at all, or refused clearly."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import pytest

from recsim.output import (
    OutputError,
    check_output_path,
    replacing,
    same_file,
    write_text,
)


def test_write_text_writes_the_file_and_nothing_else(tmp_path: Path) -> None:
    out = write_text(tmp_path / "a.json", '{"x": 1}')
    assert out.read_text() == '{"x": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_gzip_output_is_the_same_bytes_for_the_same_text(tmp_path: Path) -> None:
    first = write_text(tmp_path / "a.json.gz", "hello").read_bytes()
    second = write_text(tmp_path / "b.json.gz", "hello").read_bytes()
    assert first == second  # no time stamp or file name in the header
    assert gzip.decompress(first) == b"hello"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    target.write_text("old")
    (tmp_path / "plan.json.tmp").write_text("a user's own file")  # never touched
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json", "plan.json.tmp"]
    assert (tmp_path / "plan.json.tmp").read_text() == "a user's own file"


def test_paths_that_cannot_take_a_file_are_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        check_output_path(tmp_path, "timeline")
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "t.json")
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is not a folder"):
        check_output_path(tmp_path / "f" / "t.json")
    assert check_output_path(tmp_path / "t.json") == tmp_path / "t.json"


def test_a_trailing_slash_names_a_folder_not_a_file(tmp_path: Path) -> None:
    # ``Path`` drops the slash: "out/" became a file called "out" (a tester's find).
    with pytest.raises(OutputError, match="names a folder"):
        check_output_path(f"{tmp_path}/nocreate/")
    assert not (tmp_path / "nocreate").exists()


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm")
def test_a_file_under_dev_that_names_no_descriptor_is_a_file(tmp_path: Path) -> None:
    # Only /dev/std*, /dev/fd/N and /proc/*/fd/N are streams: /dev/shm/x.json is a new file (a
    # reviewer found it refused as "permission denied").
    path = Path("/dev/shm") / f"recsim-test-{os.getpid()}.json"
    try:
        write_text(path, "{}")
        assert path.read_text() == "{}"
    finally:
        path.unlink(missing_ok=True)


def test_a_link_to_a_file_stays_a_link(tmp_path: Path) -> None:
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to("real.json")
    write_text(tmp_path / "link.json", "new")
    assert (tmp_path / "link.json").is_symlink()
    assert (tmp_path / "real.json").read_text() == "new"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_link_to_a_descriptor_is_written_in_place(tmp_path: Path) -> None:
    # A link to /proc/self/fd/N resolves to whatever the descriptor names (here a regular file):
    # renaming over it replaced the link with a plain file, and the descriptor got nothing.
    sink = tmp_path / "sink.txt"
    with open(sink, "w") as handle:
        link = tmp_path / "out"
        link.symlink_to(f"/proc/self/fd/{handle.fileno()}")
        write_text(link, "through the descriptor")
        assert link.is_symlink()
    assert sink.read_text() == "through the descriptor"


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_a_device_is_written_in_place() -> None:
    write_text(Path("/dev/null"), "discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_device_that_refuses_the_bytes_is_a_clear_error() -> None:
    with pytest.raises(OutputError, match="No space left"):
        write_text(Path("/dev/full"), "x" * 100_000)
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_same_file_follows_links_and_relative_paths(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(a)
    assert same_file(a, link)
    assert not same_file(a, tmp_path / "other.json")  # missing: not the same


def test_outputs_get_the_umask_mode_or_keep_the_replaced_files(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fresh = write_text(tmp_path / "new.json", "{}")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # not mkstemp's 0600
        fresh.chmod(0o640)
        write_text(fresh, '{"again": 1}')
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_a_umask_without_the_owners_write_bit_still_gets_the_file_written(tmp_path: Path) -> None:
    old = os.umask(0o277)
    try:
        out = write_text(tmp_path / "ro.json", "{}")
    finally:
        os.umask(old)
    assert out.read_text() == "{}"
    assert stat.S_IMODE(out.stat().st_mode) == 0o400  # the mode comes after the bytes
