"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class LmlmError(Exception):
    """Bad input or a failed precondition, with a message that names what and where."""
