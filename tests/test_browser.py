"""The browser client in real headless Chromium against a real `signstream serve`: it connects over
WebRTC, sends a caption, plays the avatar video, and the picture changes while the avatar signs."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-loopback-in-peer-connection",
                 "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt package chromium)")


@pytest.fixture
def server() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
                            cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                break
        else:
            pytest.fail(f"signstream serve exited with {proc.wait()}")
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# The mean absolute difference of two frames of the playing <video>, drawn to a canvas.
_SNAPSHOT = """() => { const v = document.getElementById('avatar'); const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight; const g = c.getContext('2d'); g.drawImage(v, 0, 0);
  return Array.from(g.getImageData(0, 0, c.width, c.height).data.filter((_, i) => i % 16 === 0)); }"""


def test_page_signs_over_webrtc(server: str):
    from playwright.async_api import async_playwright

    async def main():
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(server + "/")
                await page.wait_for_function("document.getElementById('avatar').videoWidth > 0", timeout=30000)
                assert await page.evaluate("document.getElementById('avatar').videoWidth") == 512
                rest = await page.evaluate(_SNAPSHOT)
                await page.fill("#text", "Hi, Bob!")
                await page.keyboard.press("Enter")
                await page.wait_for_selector("#committed p", timeout=20000)
                assert "FS:B-O-B" in await page.inner_text("#committed")
                change = 0.0
                for _ in range(100):  # sample the picture while the avatar signs
                    now = await page.evaluate(_SNAPSHOT)
                    change = max(change, sum(abs(a - b) for a, b in zip(now, rest)) / len(rest))
                    if change > 8.0:
                        break
                    await asyncio.sleep(0.05)
                assert change > 8.0
                await page.wait_for_selector("#statuses li[data-status=fingerspelled]", timeout=20000)
                assert (await page.inner_text("#state")).startswith("WebRTC connected")
            finally:
                await browser.close()
    asyncio.run(asyncio.wait_for(main(), 60))
