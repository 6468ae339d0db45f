"""Atomic writes: what was there stays whole until the new file or folder is complete."""

import pytest

from lmlm.files import atomic_directory, atomic_write


def test_a_folder_replaces_the_old_one_only_when_whole(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "old.bin").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(out) as tmp:
        (tmp / "new.bin").write_text("half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] and (out / "old.bin").read_text() == "old"
    with atomic_directory(out) as tmp:
        (tmp / "new.bin").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_file_replaces_the_old_one_only_when_whole(tmp_path):
    path = tmp_path / "kb.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
    with atomic_write(path) as f:
        f.write("new")
    assert path.read_text() == "new"
