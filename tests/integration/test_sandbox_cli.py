"""``goalflow sandbox check | clean`` against the real engine."""

from __future__ import annotations

from typer.testing import CliRunner

from goalflow.cli.app import app


def test_check_says_ready_when_engine_and_image_are_there() -> None:
    result = CliRunner().invoke(app, ["sandbox", "check"])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ready: Docker ")
    assert "image goalflow-sandbox:bookworm" in result.stdout


def test_check_fails_with_the_fix_when_the_engine_is_unreachable() -> None:
    host = "unix:///nonexistent/goalflow/docker.sock"

    result = CliRunner().invoke(app, ["sandbox", "check", "--docker-host", host])

    assert result.exit_code == 1
    assert f"cannot reach the Docker engine at {host}" in result.stdout
    assert "make docker" in result.stdout


def test_check_names_the_build_command_when_the_image_is_missing() -> None:
    result = CliRunner().invoke(app, ["sandbox", "check", "--image", "goalflow-none:never"])

    assert result.exit_code == 1
    assert "`goalflow sandbox build`" in result.stdout


def test_clean_reports_what_it_removed() -> None:
    result = CliRunner().invoke(app, ["sandbox", "clean"])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("removed ") and "container(s)" in result.stdout
