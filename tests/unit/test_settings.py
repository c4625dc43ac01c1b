"""The settings model as `medstream serve` and `demo` read it: a flag over an environment variable over a default,
every field a flag listed by --help, and a bad value one line naming the setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medstream.admin.cli import _settings, build_parser
from medstream.errors import ValidationError
from medstream.server import settings_doc
from medstream.server.settings import Settings, env_of, flag_of

MEDSTREAM = str(Path(sys.executable).parent / "medstream")


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(env_of(name), raising=False)


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_flag_wins_over_the_environment_which_wins_over_the_default(
    monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("MEDSTREAM_PORT", "9001")
    monkeypatch.setenv("MEDSTREAM_WS_SEND_QUEUE", "77")
    monkeypatch.setenv("MEDSTREAM_WS_PER_MESSAGE_DEFLATE", "1")
    parser = build_parser()

    settings = _settings(parser.parse_args([command, "--port", "9002", "--no-ws-per-message-deflate"]))

    assert settings.port == 9002  # flag over environment
    assert settings.ws_per_message_deflate is False  # a boolean flag's negative form over the environment
    assert settings.ws_send_queue == 77  # environment over default
    assert settings.ws_heartbeat_seconds == Settings.model_fields["ws_heartbeat_seconds"].default  # default


@pytest.mark.parametrize(
    ("arguments", "environment", "required"),
    [
        ([], None, True),
        (["--no-require-encryption"], None, False),
        ([], "false", False),
        (["--require-encryption"], "false", True),
    ],
)
def test_encryption_is_required_unless_its_negative_flag_or_the_environment_turns_it_off(
    monkeypatch: pytest.MonkeyPatch, arguments: list[str], environment: str | None, required: bool
) -> None:
    if environment is not None:
        monkeypatch.setenv("MEDSTREAM_REQUIRE_ENCRYPTION", environment)
    assert _settings(build_parser().parse_args(["serve", *arguments])).require_encryption is required


def test_serve_help_says_encryption_is_required_by_default_and_names_the_negative_flag() -> None:
    result = subprocess.run([MEDSTREAM, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True)
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert "--require-encryption, --no-require-encryption" in text
    assert "(default: True) [env: MEDSTREAM_REQUIRE_ENCRYPTION]" in text


def test_database_is_a_short_flag_for_the_database_url() -> None:
    args = build_parser().parse_args(["serve", "--database", "sqlite:///elsewhere.db"])
    assert _settings(args).database_url == "sqlite:///elsewhere.db"


def test_the_keyword_constructor_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSTREAM_PORT", "9001")
    monkeypatch.setenv("MEDSTREAM_HOST", "0.0.0.0")
    settings = Settings(port=0, database_url="sqlite:///k.db")
    assert (settings.port, settings.host, settings.database_url) == (0, "0.0.0.0", "sqlite:///k.db")


@pytest.mark.parametrize(("env", "value"), [("MEDSTREAM_PORT", "x"), ("MEDSTREAM_PORT", "70000")])
def test_a_bad_value_is_a_message_naming_the_setting(monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError) as raised:
        _settings(build_parser().parse_args(["serve"]))
    message = raised.value.message
    assert "port (--port, MEDSTREAM_PORT)" in message and repr(value) in message
    assert "\n" not in message


def test_a_list_that_cannot_be_decoded_is_a_message_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSTREAM_CORS_ORIGINS", '["https://a.example", ')  # a JSON list cut short
    with pytest.raises(ValidationError, match=r"cors_origins \(--cors-origins, MEDSTREAM_CORS_ORIGINS\)"):
        _settings(build_parser().parse_args(["serve"]))


def test_a_bad_value_exits_non_zero_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [MEDSTREAM, "serve", "--database", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "MEDSTREAM_WS_SEND_QUEUE": "lots"},
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MEDSTREAM_WS_SEND_QUEUE" in lines[0] and "'lots'" in lines[0], result.stderr
    assert not (tmp_path / "x.db").exists(), "nothing was started"


def test_serve_help_lists_every_setting_with_its_flag_and_environment_variable() -> None:
    result = subprocess.run([MEDSTREAM, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True)
    # argparse wraps lines; the names themselves are never broken.
    words = result.stdout.split()
    for name in Settings.model_fields:
        assert any(word.startswith(flag_of(name)) for word in words), f"{flag_of(name)} is not in serve --help"
        assert any(env_of(name) in word for word in words), f"{env_of(name)} is not in serve --help"


def test_every_setting_has_a_description() -> None:
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not undescribed, f"settings without a description (its --help and deploy.md text): {undescribed}"


def test_the_deploy_guide_s_settings_table_is_the_model_s() -> None:
    guide = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
    text = guide.read_text()
    assert settings_doc.BEGIN in text and settings_doc.END in text, "docs/deploy.md lost its settings table markers"
    assert settings_doc.with_table(text) == text, (
        "docs/deploy.md's settings table differs from the Settings model: regenerate it with "
        "`.venv/bin/python -m medstream.server.settings_doc docs/deploy.md`"
    )


def test_the_table_has_a_row_per_setting() -> None:
    rows = settings_doc.table().splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == [flag_of(name) for name in Settings.model_fields]
