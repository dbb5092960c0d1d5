"""The one exception type the command line turns into a one-line message."""

MAX_MESSAGE = 600  # characters in an error line


class UsageError(Exception):
    """Bad input from the user: a file, a setting, a checkpoint. The message
    says what is wrong and where, in one line."""


def one_line(text: str) -> str:
    """A message as one bounded line, whatever paths or text it quotes: line
    breaks escaped, the middle of a long message elided."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= MAX_MESSAGE:
        return text
    keep = (MAX_MESSAGE - 5) // 2
    return f"{text[:keep]}[...]{text[-keep:]}"
