"""The one exception type the command line turns into a one-line message."""


class UsageError(Exception):
    """Bad input from the user: a file, a setting, a checkpoint. The message
    says what is wrong and where, in one line."""
