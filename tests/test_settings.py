"""One settings parser: every environment setting of the API, the jobs, Polygon and the real data
is read by orchestrator/settings.py, and a malformed one is a SettingsError that names it."""

from __future__ import annotations

import pytest

from orchestrator.cli import main
from orchestrator.errors import EXIT_USAGE, SettingsError
from orchestrator.ingest.polygon import PolygonSettings
from orchestrator.jobs.settings import JobSettings
from orchestrator.settings import ApiSettings, env_float, env_int, env_text


def test_unset_and_empty_read_as_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOME_SETTING", raising=False)
    assert env_int("SOME_SETTING", 3) == 3
    monkeypatch.setenv("SOME_SETTING", " ")
    assert env_float("SOME_SETTING", 2.5) == 2.5
    assert env_text("SOME_SETTING", "x") == " "  # text is taken as set
    monkeypatch.setenv("SOME_SETTING", "7")
    assert env_int("SOME_SETTING", 3) == 7


@pytest.mark.parametrize(
    ("name", "raw", "read", "words"),
    [
        ("API_PORT", "80a", lambda: ApiSettings.from_env(), "must be a whole number"),
        ("WS_HEARTBEAT_S", "soon", lambda: ApiSettings.from_env(), "must be a number"),
        ("JOB_TIMEOUT_S", "0", lambda: JobSettings.from_env(), "must be above 0"),
        ("JOB_MAX_ATTEMPTS", "2.5", lambda: JobSettings.from_env(), "must be a whole number"),
    ],
)
def test_a_malformed_setting_names_itself_and_its_default(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, read: object, words: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(SettingsError) as caught:
        read()  # type: ignore[operator]
    assert f"{name}={raw!r}" in str(caught.value)
    assert words in str(caught.value)


def test_polygon_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    with pytest.raises(SettingsError, match="POLYGON_API_KEY"):
        PolygonSettings.from_env()
    monkeypatch.setenv("POLYGON_API_KEY", "k")
    monkeypatch.setenv("POLYGON_BASE_URL", "http://polygon.test/")
    assert PolygonSettings.from_env().base_url == "http://polygon.test"


def test_a_command_ends_a_malformed_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MYSQL_PORT", "three thousand")
    assert main(["schema"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "MYSQL_PORT='three thousand' must be a whole number" in err
