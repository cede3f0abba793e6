"""The live server signs German captions in DSGS (`sgg`) with notation signs: lexicon words as
synthesized signs (path `notation`, kind `sign`), an unknown word fingerspelled, a lexicon sign we
do not render fingerspelled with the reason, articles not signed, and a status for every unit."""

from __future__ import annotations

import aiohttp

from server.client_cli import LiveClient
from server.protocol import SERVER_SCHEMAS, PoseFrame, schema_errors
from tests.test_server_live import live_server, run


def test_german_caption_in_sgg_signs_notation_signs_and_fingerspells_the_rest():
    async def main():
        async with live_server() as (url, _), aiohttp.ClientSession() as http:
            client = await LiveClient.connect(http, url, language="sgg")
            assert "sgg" in client.ready["languages"]
            await client.caption("c1", "Heute Regen im Haus.")
            await client.caption("c2", "Die Familie von Xaver, Auto.")
            units: dict[int, dict] = {}
            statuses: dict[int, dict] = {}
            frames: list[PoseFrame] = []
            while len(statuses) < 2 or len(statuses) < len(units):
                msg = await client.recv(timeout=30)
                if isinstance(msg, PoseFrame):
                    frames.append(msg)
                    continue
                assert schema_errors(SERVER_SCHEMAS[msg["type"]], msg) == [], msg
                if msg["type"] == "unit":
                    units[msg["unit"]] = msg
                elif msg["type"] == "unit_status":
                    statuses[msg["unit"]] = msg
            return units, statuses, frames

    units, statuses, frames = run(main())
    assert set(statuses) == set(units)  # a status for every unit
    segments = {s["word"]: s for u in units.values() for s in u["segments"]}
    for word, gloss in (("Heute", "<sgg> HEUTE"), ("Regen", "<sgg> REGEN"), ("Haus", "<sgg> HAUS"),
                        ("Familie", "<sgg> FAMILIE")):
        assert segments[word]["path"] == "notation" and segments[word]["kind"] == "sign", segments[word]
        assert segments[word]["gloss"] == gloss
    assert segments["Xaver"]["kind"] == "fingerspelling" and segments["Xaver"]["path"] != "notation"
    # AUTO is in the lexicon but not rendered: spelled instead, and the segment says why.
    assert segments["Auto"]["kind"] == "fingerspelling"
    assert "AUTO is not rendered" in segments["Auto"]["reason"] and "hamlargemod" in segments["Auto"]["reason"]
    assert segments["Die"]["path"] == "text" and "article" in segments["Die"]["reason"]  # not signed in DSGS
    assert {s["status"] for s in statuses.values()} == {"signed"}
    signed = [f for f in frames if f.kind == "sign"]
    assert len(signed) > 20
    # Synthesized sign frames move the hands (not a still pose).
    import numpy as np

    pts = np.stack([f.points for f in signed])
    assert np.ptp(pts[:, 29:50], axis=0).max() > 0.1
