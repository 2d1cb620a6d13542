"""The official ``run()`` reproduced end to end with the tiny random-weight models (``pipeline_e2e_tiny``)."""

import pytest
import torch
from PIL import Image

from pixal3d.core.camera import Camera
from pixal3d.ovoxel.dual_grid import flexible_dual_grid_to_mesh
from pixal3d.pipelines.pixal3d import Pixal3DPipeline, decoded_asset, stage_sampler_params
from tests.helpers import assert_close
from tests.pipelines.tiny_folder import write_tiny_pipeline


#: relative tolerance against the official run per device: CUDA's kernels (NAF's bilinear taps, GEMM blocking)
#: round differently; measured on an H200: ≤ 2.5e-4, every voxel coordinate identical
RTOL = {"cpu": 1e-4, "cuda": 1e-3}


@pytest.fixture(scope="module", params=["cpu", "cuda"])
def tiny(request, reference, tmp_path_factory):
    """The tiny official run on the CPU, and on CUDA where a device is present."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    e2e = reference("pipeline_e2e_tiny")
    folder = write_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "Pixal3D", e2e, reference("dinov3_tiny"), reference("naf_tiny"))
    pipeline = Pixal3DPipeline.from_pretrained(folder, device=request.param)
    cam = e2e.meta["camera_params"]
    camera = Camera.front(cam["camera_angle_x"], cam["distance"], cam["mesh_scale"])
    image = Image.fromarray(e2e["image_uint8_HWC"].numpy())
    return e2e, pipeline, camera, image


def rtol(tiny) -> float:
    """The tolerance for the device ``tiny`` runs on."""
    return RTOL[tiny[1].device.type]


@pytest.fixture(scope="module")
def run_1024(tiny):
    e2e, pipeline, camera, image = tiny
    return pipeline.run(image, camera, seed=42, pipeline_type="1024_cascade", progress=False)


#: the run's stages and the prefixes the official run's tensors were recorded under
FIXTURE_STAGES = {"structure": "ss", "shape_lr": "shape_lr", "shape_hr": "shape_hr", "texture": "tex"}


def _feats(x):
    return x.feats if hasattr(x, "feats") else x


def test_every_stage_matches_the_official_run(tiny, run_1024):
    tol = rtol(tiny)
    e2e, out = tiny[0], run_1024
    assert out.resolution == e2e.meta["result_1024"]["resolution"]
    for stage, recorded in FIXTURE_STAGES.items():
        sample = getattr(out, stage)
        assert_close(_feats(sample.noise), e2e[f"{recorded}.noise"], 0, f"{recorded}.noise")
        assert_close(sample.cond["global"], e2e[f"{recorded}.cond_global"], tol, f"{recorded}.cond_global")
        assert_close(_feats(sample.cond["proj"]), e2e[f"{recorded}.cond_proj"], tol, f"{recorded}.cond_proj")
        assert_close(_feats(sample.samples), e2e[f"{recorded}.samples"], tol, f"{recorded}.samples")
    assert torch.equal(out.structure.occupied.cpu(), e2e["shape_lr.coords"])
    assert torch.equal(out.shape_lr.coords.cpu(), e2e["shape_lr.coords"])
    assert torch.equal(out.coords_512.cpu(), e2e["upsample.coords_512"])
    assert torch.equal(out.shape_hr.coords.cpu(), e2e["shape_hr.coords"])
    assert_close(_feats(out.texture.concat_cond), e2e["tex.concat_cond"], tol, "tex.concat_cond")
    assert_close(out.shape_hr.slat.feats, e2e["shape_slat_denorm"], tol, "shape_slat")
    assert_close(out.texture.slat.feats, e2e["tex_slat_denorm"], tol, "tex_slat")
    for i, sub in enumerate(out.decoded.subdivisions):
        assert torch.equal(sub.coords.cpu(), e2e[f"decode.sub{i}_coords"])
        assert_close(sub.feats, e2e[f"decode.sub{i}_logits"], tol, f"sub{i}")


def test_decoded_mesh_and_voxels_match(tiny, run_1024):
    tol = rtol(tiny)
    e2e, out, camera = tiny[0], run_1024, tiny[2]
    asset = decoded_asset(out, camera)
    assert (torch.from_numpy(asset.coords) == e2e["voxel.coords"]).all()
    assert_close(torch.from_numpy(asset.attrs), e2e["voxel.attrs"], tol, "voxel.attrs")
    vertices, faces = flexible_dual_grid_to_mesh(
        torch.from_numpy(asset.coords), torch.from_numpy(asset.dual_vertices), torch.from_numpy(asset.intersected),
        torch.from_numpy(asset.split_weight), asset.resolution)
    assert_close(vertices, e2e["mesh.vertices"], tol, "mesh.vertices")
    assert torch.equal(faces.int(), e2e["mesh.faces"])


def test_progress_callback_reports_every_stage_and_changes_nothing(tiny, run_1024):
    e2e, pipeline, camera, image = tiny
    events = []
    out = pipeline.run(image, camera, seed=42, pipeline_type="1024_cascade", progress=lambda *e: events.append(e))
    same = torch.equal if pipeline.device.type == "cpu" else (  # bit for bit on the CPU; CUDA's atomics reorder sums
        lambda a, b: a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=rtol(tiny) * b.abs().max().item()))
    for stage in FIXTURE_STAGES:
        assert same(_feats(getattr(out, stage).samples), _feats(getattr(run_1024, stage).samples)), stage
    assert same(out.decoded.pbr.feats, run_1024.decoded.pbr.feats)
    stages = list(dict.fromkeys(stage for stage, _, _ in events))
    assert stages == ["sparse structure", "shape 512", "shape 1024", "texture", "decode"]
    for stage in stages:
        steps = [(done, total) for s, done, total in events if s == stage]
        total = steps[0][1]
        assert steps == [(i, total) for i in range(total + 1)], stage  # 0 at the start, then after every step


def test_1536_cascade_steps_down_under_the_token_budget(tiny):
    tol = rtol(tiny)
    e2e, pipeline, camera, image = tiny
    out = pipeline.run(image, camera, seed=42, pipeline_type="1536_cascade", max_num_tokens=222, progress=False)
    assert out.resolution == e2e.meta["result_1536"]["resolution"] == 1280
    assert torch.equal(out.shape_hr.coords.cpu(), e2e["c1536.shape_slat_coords"])
    assert_close(out.shape_hr.slat.feats, e2e["c1536.shape_slat_denorm"], tol, "c1536 shape")
    assert_close(out.texture.slat.feats, e2e["c1536.tex_slat_denorm"], tol, "c1536 tex")
    asset = decoded_asset(out, camera)
    assert (torch.from_numpy(asset.coords) == e2e["c1536.voxel.coords"]).all()
    assert_close(torch.from_numpy(asset.attrs), e2e["c1536.voxel.attrs"], tol, "c1536 attrs")


def test_folder_sampler_params_are_the_fixtures(tiny):
    e2e, pipeline = tiny[0], tiny[1]
    from pixal3d.pipelines.pixal3d import GenerationOptions

    params = stage_sampler_params(pipeline.folder.config.samplers, GenerationOptions())
    for stage, expected in e2e.meta["sampler_params"].items():
        got = params[stage]
        assert (got.steps, got.guidance_strength, got.guidance_rescale, got.rescale_t) == (
            expected["steps"], expected["guidance_strength"], expected["guidance_rescale"], expected["rescale_t"])
        assert got.guidance_interval == tuple(expected["guidance_interval"])
    overridden = stage_sampler_params(pipeline.folder.config.samplers, GenerationOptions(steps=5, guidance=3.0))
    assert overridden["shape_slat"].steps == 5 and overridden["shape_slat"].guidance_strength == 3.0
    assert overridden["tex_slat"].guidance_strength == 1.0


def test_cross_attention_flows_are_refused_clearly(reference, tiny, tmp_path):
    import shutil

    from pixal3d.errors import UserError
    from pixal3d.models.loading import save_model

    pipeline = tiny[1]
    folder = tmp_path / "mixed"
    shutil.copytree(pipeline.folder.path, folder)
    cross = reference("ss_flow_tiny_cross")
    save_model(cross.weights("w."), folder / "ckpts" / "ss_flow_img_dit_1_3B_64_bf16", "SparseStructureFlowModel", cross.meta["args"])
    with pytest.raises(UserError, match="cross-attention flow"):  # refused when opened, before any weight is read
        Pixal3DPipeline.from_pretrained(folder, device="cpu")


def test_a_camera_frame_cross_attention_ablation_runs_on_the_image_tokens(tiny, tmp_path):
    """A folder marked ``camera_frame_cross_attention`` (this project's ablations) runs its cross-attention
    structure flow on the image tokens (global then patch tokens, as the training conditioner's ``cross`` mode);
    its CFG negative is zero tokens, and the later stages are unchanged."""
    import shutil

    from pixal3d.conditioning.encoders import image_tokens
    from pixal3d.core.pipeline_config import PipelineConfig
    from pixal3d.models.loading import save_model
    from pixal3d.models.ss_flow import SparseStructureFlowModel

    e2e, pipeline, camera, image = tiny
    if pipeline.device.type != "cpu":
        pytest.skip("the CPU run covers the condition path")
    folder = tmp_path / "ablation"
    shutil.copytree(pipeline.folder.path, folder)
    args = {**e2e.meta["model_args"]["sparse_structure_flow_model"]["args"], "image_attn_mode": "cross"}
    torch.manual_seed(0)
    flow = SparseStructureFlowModel(**args)
    flow.initialize_weights()
    torch.nn.init.normal_(flow.out_layer.weight, std=0.02)  # a zero output layer would ignore the condition
    save_model(flow.state_dict(), folder / "ckpts" / "ss_flow_img_dit_1_3B_64_bf16", "SparseStructureFlowModel", args)
    config = PipelineConfig.read(folder / "pipeline.json")
    config.with_settings({"camera_frame_cross_attention": True}).write(folder / "pipeline.json")

    ablation = Pixal3DPipeline.from_pretrained(folder, device="cpu")
    out = ablation.run(image, camera, seed=42, pipeline_type="1024_cascade", progress=False)
    size = ablation.conditioner.stage_config("ss").image_size
    _, glob, patch = ablation.conditioner.features(image, size)
    tokens = out.structure.cond
    assert isinstance(tokens, torch.Tensor)
    assert tokens.shape == (1, glob.shape[1] + patch.shape[2] * patch.shape[3], glob.shape[2])
    torch.testing.assert_close(tokens, image_tokens(glob, patch), rtol=0, atol=0)
    torch.testing.assert_close(tokens[:, glob.shape[1] + 1], patch[:, :, 0, 1])  # row-major patch order
    assert not ablation.conditioner.negative(tokens).any()
    assert isinstance(out.shape_lr.cond, dict) and len(out.decoded.pbr.coords) > 0
    # the same seed draws the same structure noise as the official run: only the condition path differs
    torch.testing.assert_close(out.structure.noise, e2e["ss.noise"], rtol=0, atol=0)


def test_camera_frame_cross_attention_must_be_a_boolean(tmp_path):
    from pixal3d.core.pipeline_config import PipelineConfig
    from pixal3d.errors import UserError

    with pytest.raises(UserError, match="camera_frame_cross_attention must be true or false"):
        PipelineConfig.from_json({"name": "x", "args": {"models": {}, "camera_frame_cross_attention": "yes"}})
    config = PipelineConfig.from_json({"name": "x", "args": {"models": {}, "camera_frame_cross_attention": True}})
    assert config.camera_frame_cross_attention is True
    assert config.to_json()["args"]["camera_frame_cross_attention"] is True
