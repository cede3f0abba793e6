"""The page draws the avatar itself (three.js on WebGL, SwiftShader here) from the rotation frames of
a real `signstream serve`, in real headless Chromium: it loads the server's glTF and moves after a
caption; for the same pose its picture is the server's pyrender picture (silhouette IoU); a video
viewer and a WebGL viewer of one channel both move after one caption; without WebGL the page falls
back to the WebRTC video."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Iterator

import numpy as np
import pytest
from test_browser import CHROMIUM, _gauge, moved, serve, stop

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt package chromium)")

BASE_ARGS = ["--headless", "--no-sandbox", "--allow-loopback-in-peer-connection",
             "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]
# WebGL on the CPU (SwiftShader through ANGLE): what a machine without a GPU offers.
WEBGL_ARGS = BASE_ARGS + ["--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
NO_WEBGL_ARGS = BASE_ARGS + ["--disable-webgl", "--disable-3d-apis"]

LETTERS = "ABCEFKMRWY"  # ASL letters, most of them finger-heavy (E, M, R, W...)
GREEN = (0.0, 1.0, 0.0)  # a background neither skin nor shirt: silhouettes by colour


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, url = serve()
    try:
        yield url
    finally:
        stop(proc)


async def launch(p, args: list[str] = WEBGL_ARGS):
    return await p.chromium.launch(executable_path=str(CHROMIUM), args=args)

def page_pictures(server: str, frames: list[str], size: tuple[int, int]) -> list[np.ndarray]:
    """The page's own pictures of these binary rotation frames (base64), each held still on GREEN."""
    from PIL import Image
    from playwright.async_api import async_playwright

    async def main() -> list[np.ndarray]:
        async with async_playwright() as p:
            browser = await launch(p)
            try:
                page = await browser.new_page()
                await page.goto(server + "/")
                await page.wait_for_function(_DRAWN, timeout=30000)
                scene = "[document.getElementById('scene').width, document.getElementById('scene').height]"
                assert await page.evaluate(scene) == list(size)
                out = []
                for b64 in frames:
                    url = await page.evaluate("""async ([b64, bg]) => {
                      const mod = await import('/client/avatar-view.js');
                      const view = document.getElementById('scene').avatarView;
                      view.setBackground(bg);
                      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                      view.hold(mod.decodeRotations(bytes.buffer));
                      return document.getElementById('scene').toDataURL('image/png'); }""", [b64, list(GREEN)])
                    out.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")))
                return out
            finally:
                await browser.close()

    return asyncio.run(asyncio.wait_for(main(), 90))



_DRAWN = "(() => { const v = document.getElementById('scene').avatarView; return !!v && v.draws > 0; })()"
# The picture scaled to 128×128, every 4th value (cheap to take on a loaded machine): of the page's own
# WebGL canvas (it keeps its drawing buffer), or of the playing video.
_SAMPLE = """(el, w, h) => { const c = document.createElement('canvas'); c.width = 128; c.height = 128;
  const g = c.getContext('2d'); g.drawImage(el, 0, 0, w, h, 0, 0, 128, 128);
  return Array.from(g.getImageData(0, 0, 128, 128).data.filter((_, i) => i % 4 === 0)); }"""
_SCENE = f"() => {{ const s = document.getElementById('scene'); return ({_SAMPLE})(s, s.width, s.height); }}"
_VIDEO = f"() => {{ const v = document.getElementById('avatar'); return ({_SAMPLE})(v, v.videoWidth, v.videoHeight); }}"


async def _caption(page, text: str = "Hi, Bob!") -> None:
    await page.fill("#text", text)
    await page.keyboard.press("Enter")


def test_page_loads_the_gltf_and_moves_the_avatar(server: str):
    from playwright.async_api import async_playwright

    async def main():
        async with async_playwright() as p:
            browser = await launch(p)
            try:
                page = await browser.new_page()
                glb = []
                page.on("response", lambda r: glb.append(r.status) if r.url.endswith("/avatar.glb") else None)
                await page.goto(server + "/")
                await page.wait_for_function(_DRAWN, timeout=30000)
                assert glb == [200]
                assert await page.inner_text("#mode") == "avatar drawn in this page (WebGL)"
                assert await page.is_visible("#scene") and not await page.is_visible("#avatar")
                # Every bone the server names was found in the page's copy of the glTF.
                assert await page.evaluate("document.getElementById('scene').avatarView.bones.every((b) => b)")
                await asyncio.sleep(0.3)
                rest = await page.evaluate(_SCENE)
                assert len(set(rest)) > 10  # the avatar is drawn, not an empty canvas
                await _caption(page)
                await page.wait_for_selector("#committed p", timeout=20000)
                assert await moved(page, _SCENE, rest) > 8.0
                # Frames of the unit itself are drawn (the first moves are the transition from rest).
                await page.wait_for_function("document.getElementById('scene').avatarView.drawnUnit > 0", timeout=20000)
                await page.wait_for_selector("#statuses li[data-status=fingerspelled]", timeout=20000)
            finally:
                await browser.close()
    asyncio.run(asyncio.wait_for(main(), 90))


def _silhouette(image: np.ndarray) -> np.ndarray:
    rgb = image[..., :3].astype(np.int16)
    return ~((rgb[..., 1] > 200) & (rgb[..., 0] < 60) & (rgb[..., 2] < 60))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_page_draws_the_servers_picture(server: str, alphabets):
    """Ten letters retargeted by the server's code: pyrender's frame here, and the page's frame for
    the same rotations sent as a binary rotation frame: the silhouettes agree (IoU ≥ 0.9), in the
    whole picture and around the signing hand, where the fingers make the difference."""
    from engines.lexicon import entry_clip
    from server.avatar.render import AvatarRenderer
    from server.avatar.retarget import Retargeter, RetargetSettings
    from server.avatar.rotations import matrix_to_quat
    from server.config import load_config
    from server.protocol import RotationFrame, encode
    from server.rotation_stream import rotation_rig

    cfg = load_config()
    rig = rotation_rig(cfg)
    avatar = rig.avatar
    solver = Retargeter(avatar.rig, float(cfg.video.fps), RetargetSettings(smoothing=False))
    poses = []
    for letter in LETTERS:
        clip = entry_clip(alphabets["ase"].letters[letter.lower()], float(cfg.video.fps))
        k = len(clip.frames) // 2
        poses.append(solver.solve(clip.frames[k].astype(np.float64), clip.confidence[k]))
    size = (cfg.video.width, cfg.video.height)
    with AvatarRenderer(avatar, *size, (*GREEN, 1.0)) as renderer:
        worlds = [avatar.rig.fk(local) for local in poses]
        server_images = [renderer.render(w) for w in worlds]
        # The signing (right) hand's box in the picture: its joints, projected by the server's camera.
        hand = [j for name, j in avatar.rig.humanoid.items() if name.startswith("right") and "Arm" not in name]
        boxes = []
        for w in worlds:
            xy = renderer.camera.project(w[hand, :3, 3])
            x0, y0 = np.maximum(xy.min(axis=0) - 25, 0).astype(int)
            x1, y1 = np.minimum(xy.max(axis=0) + 25, size).astype(int)
            boxes.append((slice(y0, y1), slice(x0, x1)))
    frames = [base64.b64encode(encode(RotationFrame(0, -1, 0, 0.0, "rest", matrix_to_quat(local[rig.joints]).astype(np.float32),
                                                    np.zeros(3, np.float32)), "binary")).decode() for local in poses]

    page_images = page_pictures(server, frames, size)

    whole, hands, crossed = [], [], []
    for i, (s, pg, box) in enumerate(zip(server_images, page_images, boxes)):
        ms, mp = _silhouette(s), _silhouette(pg)
        assert 0.1 < ms.mean() < 0.9  # the avatar is in the picture, not everywhere
        whole.append(_iou(ms, mp))
        hands.append(_iou(ms[box], mp[box]))
        other = _silhouette(page_images[(i + 1) % len(page_images)])
        crossed.append(_iou(ms[box], other[box]))  # the next letter's hand: the check can tell poses apart
    assert min(whole) >= 0.9, dict(zip(LETTERS, whole))
    assert min(hands) >= 0.9, dict(zip(LETTERS, hands))
    assert np.mean(crossed) < np.mean(hands) - 0.05, (hands, crossed)


def test_channel_with_a_video_viewer_and_a_webgl_viewer(server: str):
    """One caption typed in the WebGL page of channel "mixed" moves both the video viewer's picture
    and its own; the server renders the channel once, for the one video viewer."""
    from playwright.async_api import async_playwright

    async def main():
        async with async_playwright() as p:
            browser = await launch(p)
            try:
                video, webgl = await browser.new_page(), await browser.new_page()
                await video.goto(server + "/?channel=mixed&render=video")
                await video.wait_for_function("document.getElementById('avatar').videoWidth > 0", timeout=30000)
                await webgl.goto(server + "/?channel=mixed")
                await webgl.wait_for_function(_DRAWN, timeout=30000)
                assert await video.inner_text("#mode") == "video from the server (WebRTC)"
                assert await webgl.inner_text("#mode") == "avatar drawn in this page (WebGL)"
                await asyncio.sleep(0.3)
                rests = [await video.evaluate(_VIDEO), await webgl.evaluate(_SCENE)]
                await _caption(webgl, "Hi, Bob! Hello, Alice.")
                # Both at once: the signing lasts a few seconds, then both pictures are at rest again.
                changes = await asyncio.gather(moved(video, _VIDEO, rests[0]), moved(webgl, _SCENE, rests[1]))
                assert min(changes) > 8.0, changes
                for page in (video, webgl):
                    assert "Hi, Bob!" in await page.inner_text("#committed")
                assert _gauge(server, "signstream_renders") == 1 and _gauge(server, "signstream_viewers") == 1
                await video.evaluate("conn.close()")
            finally:
                await browser.close()
    asyncio.run(asyncio.wait_for(main(), 90))


def test_without_webgl_the_page_falls_back_to_video(server: str):
    from playwright.async_api import async_playwright

    async def main():
        async with async_playwright() as p:
            browser = await launch(p, NO_WEBGL_ARGS)
            try:
                page = await browser.new_page()
                assert not await page.evaluate("!!document.createElement('canvas').getContext('webgl2')")
                await page.goto(server + "/")
                await page.wait_for_function("document.getElementById('avatar').videoWidth > 0", timeout=30000)
                assert await page.inner_text("#mode") == "video from the server (WebRTC)"
                assert await page.is_visible("#avatar") and not await page.is_visible("#scene")
                rest = await page.evaluate(_VIDEO)
                await _caption(page)
                assert await moved(page, _VIDEO, rest) > 8.0
                await page.evaluate("conn.close()")
            finally:
                await browser.close()
    asyncio.run(asyncio.wait_for(main(), 90))
