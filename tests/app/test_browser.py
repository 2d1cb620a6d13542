"""The app in a real browser (Debian Chromium, Playwright): an example run end to end, and a bad upload.

Set ``PIXAL3D_APP_SCREENSHOT=docs/app.png`` to also keep the screenshot (the README's screenshot is taken this way).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.app.conftest import answers, copy_artifact



def _fast_settings(page) -> None:
    """One sampling step, a small texture, every fragment kept: the tiny model in a few seconds."""
    page.locator("#steps textarea, #steps input").first.fill("1")
    page.locator("#min-part textarea, #min-part input").first.fill("0")
    page.locator("#texture-size").get_by_text("512", exact=True).click()


def _open(chromium, url: str):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("#run-single", timeout=60_000)
    return page, errors


def _canvas_drawn(page, clear=(219, 219, 224)) -> int:
    """Pixels of the 3-D viewer's canvas that differ from its clear colour (the model drawn)."""
    from io import BytesIO

    from PIL import Image

    shot = np.asarray(Image.open(BytesIO(page.locator("#viewer canvas").screenshot())).convert("RGB")).astype(int)
    return int((np.abs(shot - np.asarray(clear)).max(axis=2) > 40).sum())


def test_example_runs_in_the_browser(app_server, chromium, tmp_path):
    from tests.clients import assert_valid_gltf

    started = time.perf_counter()
    page, errors = _open(chromium, app_server.url)
    _fast_settings(page)
    page.locator("#single-examples button.gallery-item").first.click()  # the lamp: click to run

    # the 3-D viewer gets the GLB, fetches it whole and draws it
    link = page.locator("#viewer a[data-testid=model3d-download-link][href$='.glb']")
    link.wait_for(timeout=120_000)
    glb_url = link.get_attribute("href")
    page.wait_for_function("url => performance.getEntriesByType('resource').some(e => e.name === url && e.responseEnd > 0)",
                           arg=glb_url, timeout=30_000)
    page.wait_for_function("() => { const c = document.querySelector('#viewer canvas');"
                           " return c && c.width > 100 && c.height > 100; }", timeout=30_000)
    deadline = time.monotonic() + 20
    while _canvas_drawn(page) < 20 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _canvas_drawn(page) >= 20, "the viewer drew nothing"

    # the alignment view and the turntable are shown
    for selector, name in (("#alignment img", "alignment_50.png"), ("#turntable img", "turntable.gif")):
        image = page.locator(selector)
        image.wait_for(timeout=30_000)
        assert name in image.get_attribute("src")
        page.wait_for_function("s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
                               arg=selector, timeout=30_000)
    facts = page.locator("#facts").inner_text()
    assert "Background removal" in facts and "alpha" in facts
    assert "texture" in page.locator("#timings").inner_text()

    # the opacity slider re-blends the alignment view
    page.locator("#opacity input[type=range]").fill("1")
    page.locator("#opacity input[type=range]").dispatch_event("pointerup")
    page.wait_for_function("() => document.querySelector('#alignment img').src.includes('alignment_100')",
                           timeout=30_000)

    # the GLB download, validated
    with page.expect_download(timeout=30_000) as download:
        page.locator("#downloads a[download$='.glb']").click()
    glb = tmp_path / download.value.suggested_filename
    download.value.save_as(glb)
    assert glb.name == "lamp_seed42.glb"
    assert_valid_gltf(glb)

    shot = tmp_path / "app.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}; browser test took {time.perf_counter() - started:.1f} s")
    copy_artifact(shot, "PIXAL3D_APP_SCREENSHOT")
    assert not errors, errors
    page.close()


def test_bad_upload_shows_a_message_and_the_app_keeps_serving(app_server, chromium, tmp_path):
    from PIL import Image

    page, errors = _open(chromium, app_server.url)
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(clear)
    for upload, message in ((bad, "notes.png is not an image this app can read"), (clear, "no object found")):
        page.locator("#single-image input[type=file]").set_input_files(str(upload))
        page.wait_for_timeout(500)
        page.locator("#run-single").click()
        toast = page.locator(".toast-body", has_text=message)
        toast.wait_for(timeout=60_000)
        text = toast.inner_text()
        assert "Traceback" not in text and str(tmp_path) not in text and "/tmp/" not in text
        page.locator(".toast-close").first.click()
        if page.locator("#single-image button[aria-label='Clear']").count():
            page.locator("#single-image button[aria-label='Clear']").click()
    assert answers(app_server.url) and app_server.process.poll() is None  # still serving
    assert not errors, errors
    page.close()
