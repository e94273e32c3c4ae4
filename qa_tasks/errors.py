"""The one exception type users see as a single line (the CLI hook prints it and exits 2)."""

import sys
from collections.abc import Callable

__all__ = ["QAPackError", "exit_code_of"]


class QAPackError(Exception):
    """A user-fixable problem: bad path, missing or malformed data, bad config value.

    The message must be one line that says what is wrong and how to fix it.
    """

    exit_code = 2

    def report(self) -> int:
        """Print the one-line message the way every command of the pack does; returns the exit code."""
        print(f"error: {self}", file=sys.stderr)
        return self.exit_code


def exit_code_of(run: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """A command's exit code: ``run(argv)``'s, or the one-line report of a usage error."""
    try:
        return run(argv)
    except QAPackError as e:
        return e.report()


def _one_line_excepthook(kind, value, tb, previous=sys.excepthook) -> None:
    """An uncaught ``QAPackError`` (code run by a command that does not catch it, e.g. ``lm_eval`` with the
    startup hook switched off loading the pack's tasks through --include_path) is its one line and exit code.
    ``os._exit``: the exit code of an uncaught exception is always 1 once the hook returns."""
    if not isinstance(value, QAPackError):
        previous(kind, value, tb)
        return
    import os

    code = value.report()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if sys.excepthook is sys.__excepthook__:  # leave a hook someone else installed alone
    sys.excepthook = _one_line_excepthook
