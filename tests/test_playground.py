"""The playground at ``/`` of the HTTP app: its routes over HTTP, then the page in a real browser.

One real server on 127.0.0.1 (MCP + /v1 + playground, bearer token) runs the tiny Stable Diffusion
model for the whole module. The browser tests drive Debian's Chromium at /usr/bin/chromium with
Playwright (never a downloaded browser); they skip only where that Chromium is not installed
(scripts/test installs it where it can). ``PLAYGROUND_SCREENSHOTS=DIR`` saves a PNG of each screen
(docs/playground-*.png were made that way).
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from http_servers import mcp_http_client, serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "playground-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
API = "/playground/api"
SHOTS = os.environ.get("PLAYGROUND_SCREENSHOTS")


@pytest.fixture(scope="module")
def server(tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``abstractvision serve`` as the CLI builds it: MCP, /v1 and the playground, one token."""
    from mcp_server.config import load_config
    from mcp_server.http import build_app
    from mcp_server.openai_api import openai_app
    from mcp_server.server import create_server

    store = tmp_path_factory.mktemp("playground-store")
    args = ["--transport", "streamable-http", "--openai", "--auth-token", TOKEN]
    args += ["--store", str(store), "--model", str(tiny_sd_dir), "--device", "cpu"]
    cfg = load_config(args, environ={})
    mcp = create_server(cfg)
    state = mcp.abstractvision_state  # type: ignore[attr-defined]
    with serving(build_app(mcp, cfg, openai_app(state))) as url:
        yield {"url": url, "state": state, "store": state.engine.store}


def _get(server: dict[str, Any], path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(server["url"] + path, timeout=60, **kwargs)


# ---- the routes, over plain HTTP ----------------------------------------------------------


def test_page_is_public_but_guarded(server: dict[str, Any]) -> None:
    page = _get(server, "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "/playground/static/playground.js" in page.text and "http" not in page.text.lower()
    assert _get(server, "/playground/static/playground.js").status_code == 200
    assert _get(server, "/playground/static/nope.js").status_code == 404
    assert _get(server, "/playground/static/..%2F__init__.py").status_code == 404
    # The same Host/Origin guard as /mcp and /v1: a rebinding page gets nothing.
    assert _get(server, "/", headers={"Host": "evil.example"}).status_code in (400, 421)
    assert _get(server, API + "/tools", headers={**AUTH, "Host": "evil.example"}).status_code in (
        400,
        421,
    )
    origin = {**AUTH, "Origin": "http://evil.example"}
    assert _get(server, API + "/tools", headers=origin).status_code in (400, 403)
    # The API needs the token, like every other path.
    assert _get(server, API + "/tools").status_code == 401
    assert _get(server, API + "/artifacts").status_code == 401


def test_tool_schemas_and_bounds(server: dict[str, Any]) -> None:
    doc = _get(server, API + "/tools", headers=AUTH).json()
    assert {"text_to_image", "image_to_image"} <= set(doc["tasks"])
    width = doc["schemas"]["text_to_image"]["properties"]["width"]
    from abstractvision.types import LIMITS

    assert width["maximum"] == LIMITS.max_side and width["multipleOf"] == LIMITS.side_multiple
    too_wide = {"task": "text_to_image", "params": {"prompt": "x", "width": 5000}}
    refused = httpx.post(server["url"] + API + "/jobs", json=too_wide, headers=AUTH, timeout=30)
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert "width" in message and "5000" in message and str(LIMITS.max_side) in message
    unknown = httpx.post(
        server["url"] + API + "/jobs", json={"task": "nope"}, headers=AUTH, timeout=30
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "task"
    assert _get(server, API + "/artifacts?limit=1000", headers=AUTH).status_code == 400
    missing = _get(server, API + "/artifacts/" + "0" * 32 + "/content", headers=AUTH)
    assert missing.status_code == 404 and "/" not in missing.json()["error"]["message"].split()[-1]


def test_job_events_stream_progress_then_result(server: dict[str, Any]) -> None:
    params = {"prompt": "a red cube", "width": 64, "height": 64, "steps": 8, "seed": 4}
    url = server["url"] + API
    body = {"task": "text_to_image", "params": params}
    job = httpx.post(url + "/jobs", json=body, headers=AUTH, timeout=60)
    assert job.status_code == 200, job.text
    events: list[tuple[str, Any]] = []
    job_id = job.json()["job_id"]
    running_at_first_step = None
    with httpx.stream("GET", f"{url}/jobs/{job_id}/events", headers=AUTH, timeout=120) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in answer.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line[5:])))
                if name == "progress" and running_at_first_step is None:
                    running_at_first_step = not server["state"].jobs.get(job_id).done
    assert running_at_first_step  # each step is pushed as it happens, not when the job ends
    steps = [data for name, data in events if name == "progress"]
    assert steps and steps[-1]["step"] == steps[-1]["total"]
    name, done = events[-1]
    assert name == "done" and done["status"] == "succeeded", done
    (item,) = done["items"]
    assert item["prompt"] == "a red cube" and item["seed"] == 4 and item["width"] == 64
    listed = _get(server, API + "/artifacts?limit=100", headers=AUTH).json()["items"]
    assert item["id"] in [i["id"] for i in listed]
    thumb = _get(server, f"{API}/artifacts/{item['id']}/thumbnail", headers=AUTH)
    assert thumb.headers["content-type"] == "image/webp"
    download = _get(server, f"{API}/artifacts/{item['id']}/content?download=1", headers=AUTH)
    assert download.headers["content-type"] == "image/png"
    assert f'filename="{item["id"]}.png"' in download.headers["content-disposition"]


def test_no_playground_flag(tmp_path: Path) -> None:
    from mcp_server.config import load_config
    from mcp_server.http import build_app
    from mcp_server.server import create_server

    args = ["--transport", "streamable-http", "--no-playground", "--store", str(tmp_path)]
    cfg = load_config(args, environ={})
    with serving(build_app(create_server(cfg), cfg)) as url:
        assert httpx.get(url + "/", timeout=30).status_code == 404
        assert httpx.get(url + API + "/tools", timeout=30).status_code == 404


# ---- the page, in Debian's Chromium --------------------------------------------------------


@pytest.fixture(scope="module")
def page(server: dict[str, Any]) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium (scripts/test installs Debian's package)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        context = browser.new_context(
            viewport={"width": 1180, "height": 820}, accept_downloads=True
        )
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(server["url"] + "/")
        tab.errors = errors
        yield tab
        context.close()
        browser.close()
    assert not errors, errors


def shot(tab: Any, name: str) -> None:
    """Save a screenshot of the current screen when PLAYGROUND_SCREENSHOTS names a folder."""
    if not SHOTS:
        return
    from PIL import Image

    tab.evaluate("() => { document.querySelector('#toast').hidden = true; }")
    raw = tab.screenshot()
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    image.thumbnail((760, 760))
    image = image.quantize(colors=48)
    image.save(Path(SHOTS) / f"playground-{name}.png", optimize=True)


def fill_params(tab: Any, **values: Any) -> None:
    for name in ("width", "height", "steps", "seed", "strength"):
        box = tab.locator(f"#param-{name}")
        if box.count():
            box.fill(str(values.get(name, "")))


def generate(tab: Any) -> None:
    tab.evaluate("delete document.body.dataset.jobStatus")
    tab.click("#generate")


def wait_status(tab: Any, status: str) -> None:
    tab.wait_for_selector(f"body[data-job-status='{status}']")


def test_token_entered_once(server: dict[str, Any], page: Any) -> None:
    page.wait_for_selector("#token-form:not([hidden])")
    shot(page, "token")
    page.fill("#token", TOKEN)
    page.click("#token-form button")
    page.wait_for_selector("body[data-ready='1']")
    assert page.evaluate("sessionStorage.getItem('abstractvision.token')") == TOKEN
    page.reload()  # kept for the session: no second prompt
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#token-form").is_hidden()
    options = page.locator("#task option").evaluate_all("(os) => os.map((o) => o.value)")
    assert {"text_to_image", "image_to_image"} <= set(options)


def test_bounds_enforced_in_the_page(server: dict[str, Any], page: Any) -> None:
    page.select_option("#task", "text_to_image")
    assert page.get_attribute("#param-width", "max") == "4096"
    assert "4096" in page.inner_text("label.param:has(#param-width) .bounds")
    page.fill("#prompt", "too wide")
    fill_params(page, width=5000, height=64, steps=1)
    before = page.evaluate("document.body.dataset.job || ''")
    page.click("#generate")
    page.wait_for_selector("#error:has-text('width=5000')")
    assert "4096" in page.inner_text("#error")
    assert page.evaluate("document.body.dataset.job || ''") == before  # no job was made


def test_generate_512_shows_result_quickly(server: dict[str, Any], page: Any) -> None:
    """Records how soon a 512x512 result is on screen after its job finished (not asserted)."""
    delays = []
    for seed in (11, 12, 13):
        page.fill("#prompt", "a lighthouse at dusk")
        fill_params(page, width=512, height=512, steps=1, seed=seed)
        generate(page)
        wait_status(page, "succeeded")
        img = page.locator("#result figure img")
        assert img.evaluate("(i) => [i.naturalWidth, i.naturalHeight]") == [512, 512]
        delays.append(page.evaluate("window.playground.lastResultDelayMs"))
        card = page.locator(f".card[data-id='{img.locator('..').get_attribute('data-id')}']")
        card.wait_for()
    shot(page, "generate")
    figure = f"512x512 result shown {statistics.median(delays):.0f} ms after the job finished"
    print(f"\nplayground: {figure} (median of {delays})", file=sys.stderr)
    with open(os.environ.get("PLAYGROUND_TIMINGS", os.devnull), "a") as out:
        out.write(json.dumps({"result_delay_ms": delays}) + "\n")


def test_progress_then_cancel(server: dict[str, Any], page: Any) -> None:
    store = server["store"]
    count = len(store.list_artifacts())
    page.fill("#prompt", "a slow one")
    fill_params(page, width=64, height=64, steps=200, seed=3)
    generate(page)
    page.wait_for_function(
        "() => /step [0-9]+ of 200 · ETA/.test(document.querySelector('#progress-text').textContent)"
    )
    shot(page, "progress")
    page.click("#cancel")
    wait_status(page, "cancelled")
    assert "cancelled" in page.inner_text("#progress-text")
    assert len(store.list_artifacts()) == count  # nothing stored


def test_reuse_result_and_inpaint_with_painted_mask(server: dict[str, Any], page: Any) -> None:
    page.select_option("#task", "text_to_image")
    page.fill("#prompt", "a small source")
    fill_params(page, width=128, height=128, steps=1, seed=21)
    generate(page)
    wait_status(page, "succeeded")
    source = page.locator("#result figure").get_attribute("data-id")
    page.locator(f".card[data-id='{source}'] button.use").click()
    assert page.input_value("#task") == "image_to_image"
    canvas = page.locator("#mask-canvas")
    canvas.wait_for()
    page.wait_for_function("() => document.querySelector('#mask-canvas').width === 128")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6, steps=8)
    page.mouse.up()
    painted = canvas.evaluate(
        "(c) => c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".filter((v, i) => i % 4 === 3 && v > 0).length"
    )
    assert 0 < painted < 128 * 128  # part of the image, not all of it
    page.fill("#prompt", "make it blue")
    fill_params(page, steps=2, seed=22)
    shot(page, "inpaint")
    generate(page)
    wait_status(page, "succeeded")
    made = page.locator("#result figure").get_attribute("data-id")
    meta = server["store"].get_metadata(made)["metadata"]
    assert meta["pipeline"] == "StableDiffusionInpaintPipeline", meta
    assert meta["task"] == "image_to_image" and (meta["width"], meta["height"]) == (128, 128)


def test_upload_and_drop_inputs(server: dict[str, Any], page: Any) -> None:
    from http_servers import png

    page.select_option("#task", "image_to_image")
    clear = page.locator(".slot:has([data-field='image']) button.link")
    if clear.count():
        clear.click()
    page.locator(".slot:has([data-field='image']) input[type=file]").set_input_files(
        {"name": "purple.png", "mimeType": "image/png", "buffer": png((96, 64))}
    )
    page.wait_for_selector("[data-field='image'] img.chosen")
    assert "purple.png" in page.inner_text("[data-field='image']")
    page.fill("#prompt", "from an upload")
    fill_params(page, steps=2, seed=31, width="", height="")
    generate(page)
    wait_status(page, "succeeded")
    made = page.locator("#result figure").get_attribute("data-id")
    assert server["store"].get_metadata(made)["metadata"]["width"] == 96
    # A gallery card dropped on the image slot becomes the input, as an artifact ref.
    transfer = page.evaluate_handle(
        f"() => {{ const t = new DataTransfer(); "
        f"t.setData('application/x-abstractvision-artifact', '{made}'); return t; }}"
    )
    page.dispatch_event("[data-field='image']", "drop", {"dataTransfer": transfer})
    page.wait_for_selector(f"[data-field='image']:has-text('artifact {made[:8]}')")
    # A list of images (reference_images) takes several files at once, up to its maxItems.
    many = page.locator(".slot:has([data-field='reference_images']) input[type=file]")
    many.set_input_files(
        [
            {"name": f"ref{i}.png", "mimeType": "image/png", "buffer": png((64, 64))}
            for i in range(2)
        ]
    )
    page.wait_for_selector("[data-field='reference_images']:has-text('ref1.png')")
    assert page.locator("[data-field='reference_images'] img.chosen").count() == 2


def test_mcp_artifact_appears_then_compare_copy_download(server: dict[str, Any], page: Any) -> None:
    page.wait_for_selector("#live.on")

    async def call_over_mcp() -> str:
        async with mcp_http_client(server["url"], TOKEN) as client:
            args = {"prompt": "made by an agent", "width": 64, "height": 64, "steps": 1}
            result = await client.call_tool("text_to_image", {**args, "seed": 99})
            return str(result.structured_content["$artifact"])

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API owns this thread's loop
        made = thread.submit(anyio.run, call_over_mcp).result(timeout=120)
    card = page.locator(f".card[data-id='{made}']")
    card.wait_for()  # pushed by the artifact feed: no reload, no polling
    assert "made by an agent" in card.inner_text()
    shot(page, "gallery")

    card.locator("button.copy").click()
    page.wait_for_function(f"() => (document.body.dataset.copied || '').includes('{made}')")
    with page.expect_download() as download:
        card.locator("button.download").click()
    assert download.value.suggested_filename == f"{made}.png"

    other = page.locator(".card").nth(1)
    card.locator("input.pick").check()
    other.locator("input.pick").check()
    page.click("#compare-btn")
    page.wait_for_selector("#compare:not([hidden]) .column >> nth=1")
    assert page.locator("#compare .column").count() == 2
    assert page.locator("#compare tr.differs th").all_inner_texts()  # e.g. prompt, seed differ
    page.wait_for_function(
        "() => [...document.querySelectorAll('#compare img')].every((i) => i.naturalWidth > 0)"
    )
    shot(page, "compare")
    page.click("#compare-close")


def test_video_plays_inline_with_its_stored_preview(server: dict[str, Any], page: Any) -> None:
    from PIL import Image

    from abstractvision import media

    frames = [Image.new("RGB", (64, 48), (40 * i, 90, 200 - 40 * i)) for i in range(5)]
    mp4, mime = media.encode_video(frames, fps=5, format="mp4")
    preview, preview_mime = media.encode_video(frames, fps=5, format="webp")
    store = server["store"]
    small = store.store_bytes(preview, content_type=preview_mime, tags={"role": "preview"})
    meta = {
        "task": "text_to_video",
        "params": {"prompt": "a spinning cube"},
        "width": 64,
        "height": 48,
        "num_frames": 5,
        "preview": {"$artifact": small["$artifact"], "content_type": preview_mime},
    }
    video = store.store_bytes(mp4, content_type=mime, metadata=meta)["$artifact"]
    page.click("#refresh")  # made outside any job: the gallery shows it once reloaded
    card = page.locator(f".card[data-id='{video}']")
    assert "video" in card.locator(".badge").inner_text()
    assert page.locator(f".card[data-id='{small['$artifact']}']").count() == 0  # no previews
    page.wait_for_function(
        f"() => document.querySelector(\".card[data-id='{video}'] img.thumb\").naturalWidth > 0"
    )
    card.locator("img.thumb").click()
    page.wait_for_function("() => (document.querySelector('#details video') || {}).videoWidth > 0")
    assert page.locator("#details video").evaluate("(v) => [v.videoWidth, v.videoHeight]") == [
        64,
        48,
    ]
