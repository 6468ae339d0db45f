"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class LmlmError(Exception):
    """Bad input or a failed precondition, with a message that names what and where."""


class NotFound(LmlmError):
    """The thing asked for (a triplet id, an entity) does not exist."""
