import pytest

from pixal3d.utils.files import atomic_output


def test_atomic_output_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "out.glb"
    with atomic_output(target) as tmp:
        assert tmp.suffix == ".glb" and tmp.parent == target.parent
        tmp.write_bytes(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"
    assert list(target.parent.iterdir()) == [target]


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.glb"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]
