"""The engine folder: malformed folders give clear, coded errors; packed letters equal the recordings."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engines.lexicon import fingerspell, load_alphabets
from engines.lexicon_backend import LexiconBackend
from engines.manifest import EngineFileMissing, EngineManifestError, EngineMismatch, read_manifest
from engines.signllm_backend import open_runtime


@pytest.fixture
def folder(tiny_engine, tmp_path) -> Path:
    out = tmp_path / "engine"
    shutil.copytree(tiny_engine, out)
    return out


def _edit(folder: Path, change) -> None:
    body = json.loads((folder / "engine.json").read_text())
    change(body)
    (folder / "engine.json").write_text(json.dumps(body))


def test_missing_files_are_named(folder, tmp_path):
    with pytest.raises(EngineFileMissing, match="no such engine folder"):
        read_manifest(tmp_path / "nowhere")
    (folder / "decoder.onnx").unlink()
    with pytest.raises(EngineFileMissing, match=r"decoder\.onnx: no such file \(named in .*engine\.json\)") as err:
        read_manifest(folder)
    assert err.value.code == "engine_file_missing"
    (folder / "engine.json").unlink()
    with pytest.raises(EngineFileMissing, match="not an engine folder"):
        read_manifest(folder)


@pytest.mark.parametrize("change, message", [
    (lambda b: b.pop("graphs"), "missing key 'graphs'"),
    (lambda b: b.update(format=99), "format 99 is not 2"),
    (lambda b: b["skeleton"].update(joints=17), "is not signllm-50"),
    (lambda b: b.update(languages=[]), "'languages' must be a non-empty list"),
    (lambda b: b["decoder"].update(layers="two"), "'decoder.layers' must be a positive integer"),
    (lambda b: b.update(fps=True), "'fps' must be"),
])
def test_wrong_manifest_says_what_is_wrong(folder, change, message):
    _edit(folder, change)
    with pytest.raises(EngineManifestError, match=message) as err:
        read_manifest(folder)
    assert err.value.code == "bad_engine_manifest"


def test_not_json_is_a_manifest_error(folder):
    (folder / "engine.json").write_text("{ nope")
    with pytest.raises(EngineManifestError, match="not valid JSON"):
        read_manifest(folder)


def test_graph_from_another_export_is_a_mismatch(folder):
    shutil.copyfile(folder / "encoder.onnx", folder / "decoder.onnx")
    with pytest.raises(EngineMismatch, match="the folder mixes exports"):
        read_manifest(folder)
    # With a matching checksum the runtime still compares the graph with the contract.
    from engines.manifest import sha256_of

    _edit(folder, lambda b: b["graphs"]["decoder"].update(sha256=sha256_of(folder / "decoder.onnx")))
    with pytest.raises(EngineMismatch, match="are not the decoder contract"):
        open_runtime(folder, "onnxruntime")


def test_manifest_dims_that_disagree_with_the_graph_are_a_mismatch(folder):
    _edit(folder, lambda b: b["decoder"].update(heads=b["decoder"]["heads"] * 2))
    with pytest.raises(EngineMismatch, match="the manifest says") as err:
        open_runtime(folder, "onnxruntime")
    assert err.value.code == "engine_mismatch"


def test_packed_letters_are_the_recordings_in_float16(tiny_engine, alphabets):
    packed = load_alphabets(tiny_engine / "letters.npz")
    assert set(packed) == {"ase", "gsg", "fsl"}
    for lang in packed:
        assert packed[lang].letters.keys() == alphabets[lang].letters.keys()
    for lang, word in (("ase", "quiz"), ("gsg", "Schule")):  # a moving letter (Z); German letters
        got = fingerspell(packed[lang].spell(word), 25.0)
        ref = fingerspell(alphabets[lang].spell(word), 25.0)
        assert len(got) == len(ref)
        np.testing.assert_allclose(got.frames, ref.frames, atol=2e-3)
        np.testing.assert_allclose(got.confidence, ref.confidence, atol=1e-3)
    lexicon = LexiconBackend(25.0, tiny_engine / "letters.npz")
    assert lexicon.plan("Schule", "gsg") == ("<gsg> FS:S-C-H-U-L-E", "fingerspelling")
    assert lexicon.plan("café", "fsl") == "fsl fingerspelling has no letter for 'é' in 'café'"
