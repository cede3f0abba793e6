import pytest

from server.config import REPO_ROOT, Config, ConfigError, load_config


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
