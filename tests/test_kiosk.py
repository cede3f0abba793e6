"""The kiosk page in real headless Chromium: it plays the avatar, loses the server (killed), and
reconnects by itself when a server answers again on the same port — here one started by
`signstream kiosk --no-browser`, which also shows that the command starts a server when none answers."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

from server.kiosk import answering, kiosk_url
from tests.test_browser import launch, pytestmark, serve, stop  # noqa: F401  (pytestmark: skip without Chromium)

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kiosk_url():
    assert kiosk_url("http://h:1/", "gsg", "main hall", "#00FF00", captions=False) == \
        "http://h:1/kiosk?lang=gsg&channel=main+hall&bg=00FF00&captions=0"


def test_kiosk_reconnects_after_the_server_restarts():
    from playwright.async_api import async_playwright

    port = _free_port()
    proc, url = serve(port)
    cli = None
    playing = "document.getElementById('avatar').videoWidth > 0 && document.body.dataset.state === 'connected'"

    async def main():
        nonlocal cli
        async with async_playwright() as p:
            browser = await launch(p)
            try:
                page = await browser.new_page()
                await page.goto(kiosk_url(url, channel="hall", bg="00ff00") + "&render=video")  # the WebRTC video
                await page.wait_for_function(playing, timeout=30000)
                assert await page.evaluate("document.body.dataset.connections") == "1"
                proc.kill()  # no goodbye: the page must notice on its own
                proc.wait()
                await page.wait_for_function("document.body.dataset.state === 'waiting'", timeout=30000)
                assert not answering(url)
                cli = subprocess.Popen([sys.executable, "-m", "server.cli", "kiosk", "--no-browser", "--server", url],
                                       cwd=ROOT, stdout=subprocess.PIPE, text=True)
                assert cli.stdout is not None
                printed = await asyncio.to_thread(cli.stdout.readline)  # once the server it started answers
                assert printed.strip() == f"{url}/kiosk" and answering(url)
                await page.wait_for_function(f"{playing} && document.body.dataset.connections === '2'", timeout=30000)
                # the chroma background is in the picture: a corner pixel is green
                corner = await page.evaluate("""() => { const v = document.getElementById('avatar');
                    const c = document.createElement('canvas'); c.width = 8; c.height = 8;
                    const g = c.getContext('2d'); g.drawImage(v, 0, 0, 8, 8, 0, 0, 8, 8);
                    return Array.from(g.getImageData(0, 0, 1, 1).data); }""")
                assert corner[1] > 200 and corner[0] < 60 and corner[2] < 60, corner
            finally:
                await browser.close()

    try:
        asyncio.run(asyncio.wait_for(main(), 80))
    finally:
        stop(proc)
        if cli is not None:
            cli.send_signal(signal.SIGINT)  # the command stops the server it started
            assert cli.wait(timeout=30) == 0
            assert not answering(url)


def test_sigterm_to_the_kiosk_stops_the_server_it_started():
    """What a service manager sends: the kiosk ends cleanly and takes its server with it (no orphan)."""
    url = f"http://127.0.0.1:{_free_port()}"
    cli = subprocess.Popen([sys.executable, "-m", "server.cli", "kiosk", "--no-browser", "--server", url],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert cli.stdout is not None and cli.stdout.readline().strip() == f"{url}/kiosk" and answering(url)
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=30) == 0
        assert not answering(url)
    finally:
        if cli.poll() is None:
            cli.kill()
