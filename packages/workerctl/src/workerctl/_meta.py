"""``workerctl version`` and ``workerctl completion bash|zsh|fish``."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from ._groups import CONTEXT, cli, version_text

__all__ = ("completion", "version")


@cli.command(context_settings=CONTEXT)
def version() -> None:
    """Print the version of workerctl and what it runs on.

    \b
    Example:
      workerctl version
    """
    click.echo(version_text())


@cli.command(context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    Example:
      workerctl completion bash > ~/.local/share/bash-completion/completions/workerctl
      workerctl completion zsh > "${fpath[1]}/_workerctl"
      workerctl completion fish > ~/.config/fish/completions/workerctl.fish
    """
    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - the Choice only offers shells click knows
        raise click.BadParameter(f"unsupported shell {shell!r}")
    click.echo(cls(cli, {}, "workerctl", "_WORKERCTL_COMPLETE").source())
