"""Profile of one default-model generation: where the time goes, and whether any pass is wasted.

Runs ``models/pixal3d-small`` on ``examples/example.png`` (seed 42, default steps and CFG; generation only, no
GLB export) once to warm up, then once under ``torch.profiler`` while counting, per stage, the conditioner calls,
the flow forward passes and the batch size of each pass. Prints two markdown tables: the per-stage pass counts
(with the count the official schedule implies), and the top operators by self CPU time.

    python bench/profile_generate.py [--rows 8]
"""

from __future__ import annotations

import argparse
import collections
import time

from runner import REPO, table_header, table_row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from pixal3d.pipelines.pixal3d import STAGES, GenerationOptions, Pixal3DPipeline, stage_sampler_params
    from pixal3d.sampling.flow_euler import FlowEulerGuidanceIntervalSampler, guidance_active, time_grid

    pipe = Pixal3DPipeline.from_pretrained(REPO / "models" / "pixal3d-small", device="cpu")
    image = str(REPO / "examples" / "example.png")
    options = GenerationOptions(seed=42)
    pipe.generate(image, options, progress=False)  # warm-up (allocator, oneDNN primitives)

    stage = {"name": "preprocess"}
    conditions: collections.Counter = collections.Counter()
    passes: collections.Counter = collections.Counter()
    batch_items: collections.Counter = collections.Counter()
    condition, call = pipe.conditioner.condition, FlowEulerGuidanceIntervalSampler._call

    def counted_condition(kind, *a, **k):
        conditions[stage["name"]] += 1
        return condition(kind, *a, **k)

    def counted_call(model, x_t, t, cond, model_kwargs):
        passes[stage["name"]] += 1
        batch_items[stage["name"]] += x_t.batch_size if hasattr(x_t, "batch_size") else x_t.shape[0]
        return call(model, x_t, t, cond, model_kwargs)

    def named(method, name):
        def wrapped(*a, **k):
            stage["name"] = name(a) if callable(name) else name
            return method(*a, **k)
        return wrapped

    pipe.conditioner.condition = counted_condition
    FlowEulerGuidanceIntervalSampler._call = staticmethod(counted_call)
    pipe.sample_sparse_structure = named(pipe.sample_sparse_structure, "structure")
    pipe.sample_shape = named(pipe.sample_shape, lambda a: a[0])
    pipe.sample_texture = named(pipe.sample_texture, "texture")

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = pipe.generate(image, options, progress=False)
    seconds = time.perf_counter() - start

    params = stage_sampler_params(pipe.folder.samplers, options)
    print(f"default model, example.png, seed 42, generation only (no GLB): {seconds:.2f} s under the profiler "
          f"(profiler overhead included); {torch.get_num_threads()} threads\n")
    print(table_header(["stage", "conditioner calls", "flow passes", "items per pass", "official schedule (passes)"],
                       "lrrrr"))
    for name in passes:
        p = params[{"structure": STAGES["structure"], "texture": STAGES["texture"]}.get(name, STAGES["shape_lr"]).sampler]
        ts = time_grid(p.steps, p.rescale_t)[:-1]
        expected = sum(2 if p.guidance_strength not in (0, 1) and guidance_active(t, p.guidance_interval) else 1 for t in ts)
        print(table_row([name, conditions[name], passes[name], f"{batch_items[name] / passes[name]:.0f}",
                         f"{expected} ({p.steps} steps)"]))
    print(f"\nstage times (s): " + ", ".join(f"{k} {v:.2f}" for k, v in out.timings.items()) + "\n")

    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    print(table_header(["operator", "self CPU (ms)", "share", "calls"], "lrrr"))
    for e in sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:args.rows]:
        print(table_row([f"`{e.key}`", f"{e.self_cpu_time_total / 1e3:.0f}", f"{e.self_cpu_time_total / total:.1%}",
                         e.count]))


if __name__ == "__main__":
    main()
