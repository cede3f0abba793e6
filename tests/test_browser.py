"""The browser client in real headless Chromium against a real `signstream serve`: it connects over
WebRTC, sends a caption, plays the avatar video, and the picture changes while the avatar signs;
two pages of one channel see one stream (rendered once); without WebRTC the /ws canvas draws."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-loopback-in-peer-connection",
                 "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt package chromium)")


def serve(port: int = 0, config: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A real `signstream serve` on 127.0.0.1:port (with `config`, else the repository's config.toml);
    returns the process and its URL once it listens."""
    extra = ["--config", str(config)] if config else []
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *extra],
                            cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            os.set_blocking(proc.stderr.fileno(), False)  # never read again: keep the pipe from filling
            return proc, found.group(1)
    pytest.fail(f"signstream serve exited with {proc.wait()}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, url = serve()
    try:
        yield url
    finally:
        stop(proc)


async def launch(p):
    return await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


async def moved(page, snapshot: str, rest: list[int], threshold: float = 8.0, tries: int = 100) -> float:
    """Sample the picture while the avatar signs; the largest mean difference from `rest`."""
    change = 0.0
    for _ in range(tries):
        now = await page.evaluate(snapshot)
        change = max(change, sum(abs(a - b) for a, b in zip(now, rest)) / len(rest))
        if change > threshold:
            break
        await asyncio.sleep(0.05)
    return change


# The playing <video> drawn to a 128×128 canvas, every 4th value (cheap to take on a loaded machine:
# a full-size read-back took seconds there): `moved` compares two of them.
_SNAPSHOT = """() => { const v = document.getElementById('avatar'); const c = document.createElement('canvas');
  c.width = 128; c.height = 128; const g = c.getContext('2d'); g.drawImage(v, 0, 0, v.videoWidth, v.videoHeight, 0, 0, 128, 128);
  return Array.from(g.getImageData(0, 0, 128, 128).data.filter((_, i) => i % 4 === 0)); }"""


def test_page_signs_over_webrtc(server: str):
    from playwright.async_api import async_playwright

    async def main():
        async with async_playwright() as p:
            browser = await launch(p)
            try:
                page = await browser.new_page()
                await page.goto(server + "/?render=video")  # the WebRTC video, not the page-drawn avatar
                await page.wait_for_function("document.getElementById('avatar').videoWidth > 0", timeout=30000)
                assert await page.evaluate("document.getElementById('avatar').videoWidth") == 512
                rest = await page.evaluate(_SNAPSHOT)
                await page.fill("#text", "Hi, Bob!")
                await page.keyboard.press("Enter")
                await page.wait_for_selector("#committed p", timeout=20000)
                assert "FS:B-O-B" in await page.inner_text("#committed")
                assert await moved(page, _SNAPSHOT, rest) > 8.0
                await page.wait_for_selector("#statuses li[data-status=fingerspelled]", timeout=20000)
                assert (await page.inner_text("#state")).startswith("WebRTC connected")
                await page.evaluate("conn.close()")  # hang up now (a closed tab is noticed only by ICE timeouts)
            finally:
                await browser.close()
    asyncio.run(asyncio.wait_for(main(), 120))  # a hang guard: a loaded machine needs minutes


def _gauge(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics") as r:
        found = re.search(rf"^{name} (\S+)$", r.read().decode(), re.M)
    assert found, name
    return float(found.group(1))


def test_two_viewers_of_a_channel_see_one_stream(server: str):
    """Two pages of channel "duo": one caption typed once in the first moves both pictures and shows
    in both; the server renders the channel once."""
    from playwright.async_api import async_playwright

    async def main():
        async with async_playwright() as p:
            browser = await launch(p)
            try:
                pages = [await browser.new_page() for _ in range(2)]
                for page in pages:
                    await page.goto(server + "/?channel=duo&render=video")
                    await page.wait_for_function("document.getElementById('avatar').videoWidth > 0", timeout=30000)
                for _ in range(100):  # pages of earlier tests may still be hanging up
                    if _gauge(server, "signstream_renders") == 1:
                        break
                    await asyncio.sleep(0.1)
                assert _gauge(server, "signstream_renders") == 1 and _gauge(server, "signstream_viewers") == 2
                rests = [await page.evaluate(_SNAPSHOT) for page in pages]
                await pages[0].fill("#text", "Hi, Bob!")
                await pages[0].keyboard.press("Enter")
                # Both pictures at once: on a loaded machine one page's sampling outlasts the signing.
                changes = await asyncio.gather(*(moved(page, _SNAPSHOT, rest) for page, rest in zip(pages, rests)))
                assert min(changes) > 8.0, changes
                for page in pages:
                    await page.wait_for_selector("#committed p", timeout=20000)
                    assert "Hi, Bob!" in await page.inner_text("#committed")
                await pages[1].goto("about:blank")  # leaving the page hangs up now, not ~30 s later
                for _ in range(50):
                    if _gauge(server, "signstream_viewers") == 1:
                        break
                    await asyncio.sleep(0.1)
                assert _gauge(server, "signstream_viewers") == 1 and _gauge(server, "signstream_renders") == 1
            finally:
                await browser.close()
    asyncio.run(asyncio.wait_for(main(), 120))  # a hang guard: a loaded machine needs minutes


_CANVAS = """() => Array.from(document.getElementById('poses').getContext('2d')
  .getImageData(0, 0, 512, 512).data.filter((_, i) => i % 16 === 0))"""


def test_websocket_fallback_draws_on_the_canvas(server: str):
    """Without RTCPeerConnection the page takes /ws and draws the pose stream on its canvas."""
    from playwright.async_api import async_playwright

    async def main():
        async with async_playwright() as p:
            browser = await launch(p)
            try:
                page = await browser.new_page()
                await page.add_init_script("delete window.RTCPeerConnection")
                await page.goto(server + "/?render=video")
                await page.wait_for_function("document.getElementById('state').textContent.startsWith('WebSocket')")
                assert await page.is_visible("#poses") and not await page.is_visible("#avatar")
                await asyncio.sleep(0.3)  # a few rest frames drawn
                rest = await page.evaluate(_CANVAS)
                assert len(set(rest)) > 1  # the rest pose is drawn
                await page.fill("#text", "Hi, Bob!")
                await page.keyboard.press("Enter")
                assert await moved(page, _CANVAS, rest, threshold=0.5) > 0.5
                await page.wait_for_selector("#statuses li[data-status=fingerspelled]", timeout=20000)
            finally:
                await browser.close()
    asyncio.run(asyncio.wait_for(main(), 120))  # a hang guard: a loaded machine needs minutes
