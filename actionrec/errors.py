"""The one exception type the CLI turns into a single line on stderr."""


class ActionrecError(Exception):
    """A problem the user can fix: the message names the file (or thing) and says how to fix it."""
