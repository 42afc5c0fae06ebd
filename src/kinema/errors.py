"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class KinemaError(Exception):
    """A problem with the user's input or environment, explained in one line.

    Raise it (or a subclass) for anything a user can fix: a missing file, a bad flag
    value, a corrupt checkpoint. Programming errors stay ordinary exceptions.
    """
