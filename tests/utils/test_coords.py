import pytest
import torch

from pixal3d.utils.coords import CoordIndex


def test_lookup_finds_every_row_and_rejects_absent():
    g = torch.Generator().manual_seed(0)
    coords = torch.unique(torch.randint(0, 9, (300, 4), generator=g), dim=0)
    coords = coords[torch.randperm(len(coords), generator=g)]
    index = CoordIndex(coords)
    assert torch.equal(index.lookup(coords), torch.arange(len(coords)))
    present = {tuple(c) for c in coords.tolist()}
    queries = torch.randint(-2, 11, (500, 4), generator=g)
    expected = torch.tensor([coords.tolist().index(q) if tuple(q) in present else -1 for q in queries.tolist()])
    assert torch.equal(index.lookup(queries), expected)


def test_lookup_keeps_query_shape_and_respects_bounds():
    coords = torch.tensor([[0, 0, 0], [1, 2, 3], [3, 3, 3]])
    index = CoordIndex(coords, bounds=[4, 4, 4])
    queries = torch.tensor([[[1, 2, 3], [4, 0, 0]], [[3, 3, 3], [-1, 0, 0]]])
    assert index.lookup(queries).tolist() == [[1, -1], [2, -1]]


def test_empty_and_invalid_inputs():
    index = CoordIndex(torch.zeros((0, 3), dtype=torch.long), bounds=[2, 2, 2])
    assert index.lookup(torch.tensor([[0, 0, 0]])).tolist() == [-1]
    with pytest.raises(ValueError):
        CoordIndex(torch.tensor([[5, 0, 0]]), bounds=[4, 4, 4])
    with pytest.raises(ValueError):
        CoordIndex(torch.zeros(3, dtype=torch.long))


def test_unique_rows_equals_torch_unique_dim0():
    from pixal3d.utils.coords import unique_rows

    g = torch.Generator().manual_seed(3)
    for dtype in (torch.int32, torch.int64):
        c = torch.randint(0, 9, (5000, 4), generator=g).to(dtype)
        expect, expect_inv = torch.unique(c, dim=0, return_inverse=True)
        got, inv = unique_rows(c, return_inverse=True)
        assert got.dtype == dtype and torch.equal(got, expect) and torch.equal(inv, expect_inv)
        assert torch.equal(unique_rows(c), expect)
    empty = torch.zeros(0, 4, dtype=torch.int32)
    assert unique_rows(empty).shape == (0, 4)
