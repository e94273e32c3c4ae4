"""The one exception type users see as a single line (the CLI hook prints it and exits 2)."""

import sys

__all__ = ["QAPackError"]


class QAPackError(Exception):
    """A user-fixable problem: bad path, missing or malformed data, bad config value.

    The message must be one line that says what is wrong and how to fix it.
    """

    exit_code = 2

    def report(self) -> int:
        """Print the one-line message the way every command of the pack does; returns the exit code."""
        print(f"error: {self}", file=sys.stderr)
        return self.exit_code
