"""Every command says what it does, and every option and argument what it is for."""

from __future__ import annotations

import pytest
import typer

from ganserve.cli import app, commands  # noqa: F401  (commands registers them on `app`)

COMMANDS = typer.main.get_command(app).commands


def test_the_commands():
    assert {"sample", "generate", "export", "train", "eval", "info", "bench"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help(name):
    command = COMMANDS[name]
    assert command.help, f"{name} has no description"
    silent = [param.opts[0] for param in command.params if not getattr(param, "help", None)]
    assert not silent, f"{name}: {silent} have no help text"
