import pytest
import torch

from pixal3d.core.cascade import CascadeConfig
from pixal3d.errors import UserError
from pixal3d.pipelines.cascade import choose_cascade_resolution, requantize_coords


def test_requantisation_matches_official_run(reference):
    fx = reference("pipeline_e2e_tiny")
    coords = requantize_coords(fx["upsample.coords_512"], 1024)
    assert torch.equal(coords, fx["shape_hr.coords"])


def test_budget_loop_reproduces_official_token_counts(reference):
    fx = reference("pipeline_e2e_tiny")
    expected = {int(r): n for r, n in fx.meta["result_1536"]["token_counts_per_R_for_reference"].items()}
    choice = choose_cascade_resolution(fx["upsample.coords_512"], "1536_cascade", max_num_tokens=222)
    assert choice.resolution == 1280
    assert choice.token_counts == {r: expected[r] for r in (1536, 1408, 1280)}
    assert torch.equal(choice.coords, fx["c1536.shape_slat_coords"])
    for r in (1152, 1024):
        assert len(requantize_coords(fx["upsample.coords_512"], r)) == expected[r]


def test_synthetic_budget_steps_down_to_1024_and_stops():
    # a dense 512-grid block: token count grows with R, so a tiny budget walks all the way down
    g = torch.stack(torch.meshgrid(*[torch.arange(0, 512, 16)] * 3, indexing="ij"), -1).reshape(-1, 3)
    coords = torch.cat([torch.zeros(len(g), 1, dtype=torch.long), g], 1)
    choice = choose_cascade_resolution(coords, "1536_cascade", max_num_tokens=1)
    assert list(choice.token_counts) == [1536, 1408, 1280, 1152, 1024]
    assert choice.resolution == 1024
    big = choose_cascade_resolution(coords, "1536_cascade", max_num_tokens=10**9)
    assert big.resolution == 1536 and list(big.token_counts) == [1536]
    # requantised coordinates stay on the latent grid and keep the batch column
    assert choice.coords[:, 1:].max() <= 1024 // 16 - 1 and choice.coords[:, 1:].min() == 0
    assert (choice.coords[:, 0] == 0).all()


def test_requantisation_formula_on_known_points():
    # round((c + 0.5) / 512 * (G - 1)) with G = R // 16; the extremes map onto the grid's ends
    coords = torch.tensor([[0, 511, 0, 256], [1, 0, 255, 100]])
    assert requantize_coords(coords, 1024).tolist() == [[0, 63, 0, 32], [1, 0, 31, 12]]
    assert requantize_coords(coords, 1536).tolist() == [[0, 95, 0, 48], [1, 0, 47, 19]]


def test_1024_cascade_never_steps_and_unknown_type_fails():
    coords = torch.tensor([[0, 1, 2, 3], [0, 511, 511, 511]])
    assert choose_cascade_resolution(coords, "1024_cascade", max_num_tokens=1).resolution == 1024
    with pytest.raises(UserError):
        choose_cascade_resolution(coords, "2048_cascade")


def test_configured_small_cascade():
    # a 16-grid structure, 3 up-blocks (×8 → 128-grid), one 256 pipeline type: latent grid 256 // 8 = 32
    config = CascadeConfig.from_args({"structure_grid": 16, "upsample_times": 3, "pipeline_types": {"256": 256},
                                      "min_resolution": 256})
    assert (config.latent_scale, config.upsampled_grid) == (8, 128)
    coords = torch.tensor([[0, 127, 0, 64]])
    assert requantize_coords(coords, 256, config).tolist() == [[0, 31, 0, 16]]  # round(127.5/128·31), round(64.5/128·31)
    assert choose_cascade_resolution(coords, "256", 1, config).resolution == 256
    assert CascadeConfig.from_args(None) == CascadeConfig()
    for bad in ({"grid": 3}, {"pipeline_types": {"x": 100}}, {"structure_grid": 1}):
        with pytest.raises(UserError):
            CascadeConfig.from_args(bad)

