import tomllib
from dataclasses import asdict

import pytest

from server.config import REPO_ROOT, Config, ConfigError, load_config
from training.corpus import CorpusConfig, load_corpus_config


def test_repository_config_loads_and_documents_every_value():
    cfg = load_config()
    assert isinstance(cfg, Config) and cfg.video.fps == 25 and cfg.engine.backend == "onnxruntime"
    for line in (REPO_ROOT / "config.toml").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"config value without a comment: {line!r}"


def test_missing_keys_take_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 9000\n")
    cfg = load_config(path)
    assert cfg.server.port == 9000 and cfg.server.host == "127.0.0.1" and cfg.video.width == 512


@pytest.mark.parametrize(
    "text, message",
    [
        ("[server]\nprot = 1\n", "unknown key 'server.prot'"),
        ("[nope]\n", "unknown key 'nope'"),
        ("[server]\nport = \"80\"\n", "'server.port' must be int"),
        ("[server]\nport = true\n", "'server.port' must be int"),
        ("[video]\nbackground = [1, \"x\"]\n", "'video.background[1]' must be float"),
        ("server = 3\n", "'server' must be a table"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_bad_config_names_key_and_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and str(path) in str(err.value) and err.value.code == "bad_config"


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")


def _differences(written: dict, defaults: dict, prefix: str = "") -> list[str]:
    """Keys whose value in the file is not the dataclass default, or that only one side has."""
    out = []
    for key in sorted(set(written) | set(defaults)):
        name = f"{prefix}{key}"
        if key not in written:
            out.append(f"{name}: not in config.toml (default {defaults[key]!r})")
        elif key not in defaults:
            out.append(f"{name}: in config.toml, no default")
        elif not prefix and isinstance(written[key], dict) and isinstance(defaults[key], dict):  # a [table]
            out += _differences(written[key], defaults[key], f"{name}.")
        elif written[key] != defaults[key]:
            out.append(f"{name}: config.toml {written[key]!r}, default {defaults[key]!r}")
    return out


def test_config_toml_is_the_dataclass_defaults():
    # One source of truth: what a deployer reads in config.toml is what a missing key takes.
    written = tomllib.loads((REPO_ROOT / "config.toml").read_text(encoding="utf-8"))
    defaults = asdict(Config()) | {"corpus": asdict(CorpusConfig())}
    assert _differences(written, defaults) == []


def test_the_comparison_names_each_differing_key():
    written = {"server": {"port": 9000, "extra": 1}, "corpus": {}}
    defaults = {"server": {"port": 8080, "host": "h"}, "corpus": {"seed": 0}}
    assert _differences(written, defaults) == ["corpus.seed: not in config.toml (default 0)",
                                               "server.extra: in config.toml, no default",
                                               "server.host: not in config.toml (default 'h')",
                                               "server.port: config.toml 9000, default 8080"]


def test_training_reads_its_corpus_table_and_the_server_skips_it(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 9000\n[corpus]\nseed = 7\nlanguages = [\"ase\"]\n")
    assert load_config(path).server.port == 9000 and not hasattr(load_config(path), "corpus")
    assert load_corpus_config(path) == CorpusConfig(languages=["ase"], seed=7)
    assert load_corpus_config() == CorpusConfig()  # the repository's config.toml


@pytest.mark.parametrize("text, message", [("[corpus]\nsed = 7\n", "unknown key 'corpus.sed'"),
                                           ("corpus = 3\n", "'corpus' must be a table")])
def test_bad_corpus_table_names_key_and_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_corpus_config(path)
    assert message in str(err.value) and str(path) in str(err.value)
