"""What every recsim command shares: a ``RecsimError`` becomes one line on stderr and exit code 2.

The command modules (``cli``, ``cli_explore``, ``cli_results``) import these classes from here, so
none of them needs another to load.
"""

from __future__ import annotations

from typing import Any

import click

from recsim.errors import RecsimError

EXIT_USER_ERROR = 2
#: Ctrl-C, as shells report a process killed by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


class _OneLineErrors:
    """Mixin for click commands and groups: a ``RecsimError`` (a user mistake or an infeasible
    request) is printed as ``recsim: error: ...`` and exits 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except RecsimError as exc:
            click.echo(f"recsim: error: {exc}", err=True)
            ctx.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            # One line and the conventional status instead of click's "Aborted!" and exit 1; a
            # sweep keeps what it stored (`--resume` continues it).
            click.echo("recsim: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


class RecsimGroup(_OneLineErrors, click.Group):
    """A click group with recsim's one-line errors."""


class RecsimCommand(_OneLineErrors, click.Command):
    """A click command with recsim's one-line errors."""
