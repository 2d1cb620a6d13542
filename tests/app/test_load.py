"""A bounded load test: 20 requests at once through ``gradio_client`` against the running app on loopback.

All must queue and complete (the app's concurrency limit is 1 on CPU: they are worked on one at a time), none may
crash the server, every output must be a valid GLB. Throughput and latency percentiles are printed as a markdown
table (and written to ``$PIXAL3D_LOAD_REPORT`` when set); the figures in docs/testing.md come from this test.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.app.conftest import answers, copy_artifact

REQUESTS = 20
#: the whole test is bounded: every request must be back within this many seconds of the first submission
DEADLINE_S = 240
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lamp.png"


def test_twenty_concurrent_requests(app_server, tmp_path):
    client_module = pytest.importorskip("gradio_client", reason="gradio_client is installed with gradio")
    from tests.clients import assert_valid_gltfs

    client = client_module.Client(app_server.url, verbose=False, download_files=str(tmp_path / "downloads"),
                                  analytics_enabled=False)
    image = client_module.handle_file(str(EXAMPLE))
    done_at: dict[int, float] = {}
    lock = threading.Lock()

    def finished(index: int):
        def record(_job):
            with lock:
                done_at[index] = time.perf_counter()
        return record

    started = time.perf_counter()
    jobs = []
    for i in range(REQUESTS):
        # model, seed, random seed, FOV, steps, guidance, resolution, texture size, face budget, smallest part, formats
        job = client.submit(image, "Pixal3D", i, False, 0, "1", "", "model default", 512, 10_000, "0", [],
                            api_name="/single")
        job.add_done_callback(finished(i))
        jobs.append(job)
    results = []
    for job in jobs:
        results.append(job.result(timeout=max(1.0, DEADLINE_S - (time.perf_counter() - started))))
    wall = max(done_at.values()) - started
    assert app_server.process.poll() is None and answers(app_server.url), "the server did not survive"

    glbs = [Path(r[0]) for r in results]
    assert len(glbs) == REQUESTS and all(p.suffix == ".glb" and p.is_file() for p in glbs)
    assert len({r[6] for r in results}) == REQUESTS  # each request's own seed came back
    assert_valid_gltfs(glbs)

    latency = np.array(sorted(done_at[i] - started for i in range(REQUESTS)))
    figures = {
        "requests": REQUESTS, "concurrency": 1, "wall_s": round(wall, 1),
        "throughput_per_min": round(60 * REQUESTS / wall, 1),
        "latency_p50_s": round(float(np.percentile(latency, 50)), 1),
        "latency_p90_s": round(float(np.percentile(latency, 90)), 1),
        "latency_p99_s": round(float(np.percentile(latency, 99)), 1),
        "latency_max_s": round(float(latency.max()), 1),
        "service_s": round(float(np.median(np.diff(np.concatenate([[0.0], latency])))), 2),
        "cpus": os.cpu_count(),
    }
    table = "\n".join([
        "| requests | concurrency | wall (s) | throughput (req/min) | p50 (s) | p90 (s) | p99 (s) | max (s) | per request (s) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {REQUESTS} | 1 | {figures['wall_s']} | {figures['throughput_per_min']} | {figures['latency_p50_s']} | "
        f"{figures['latency_p90_s']} | {figures['latency_p99_s']} | {figures['latency_max_s']} | {figures['service_s']} |",
    ])
    print("\n" + table)
    report = tmp_path / "load.json"
    report.write_text(json.dumps(figures, indent=1) + "\n")
    copy_artifact(report, "PIXAL3D_LOAD_REPORT")
    assert wall < DEADLINE_S
