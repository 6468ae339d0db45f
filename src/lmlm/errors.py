"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class LmlmError(Exception):
    """Bad input or a failed precondition, with a message that names what and where."""


class NotFound(LmlmError):
    """The thing asked for (a triplet id, an entity) does not exist."""


class Ambiguous(LmlmError):
    """A name that fits several entities where an edit must act on exactly one; nothing was changed."""

    def __init__(self, message: str, candidates: list[str]):
        super().__init__(message)
        self.candidates = candidates


class Busy(LmlmError):
    """The store is held by another writer for longer than a request may wait; try again later."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after
