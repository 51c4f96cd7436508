"""The one exception type that the CLI turns into a clear, single-line error."""


class DenoiselabError(Exception):
    """Bad input or state that the user can fix; the message names the problem and the fix."""
