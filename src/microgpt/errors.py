"""The exceptions the command line turns into one-line messages, and the
text they carry.

Library code speaks of settings, the command line of flags. A message that
names a setting (or a file a setting names) holds a `Name` there, not a flag:
`str(exc)` reads the setting's name ("max_data_size", "output"), and the
command line rewords it with `exc.worded(flag_of)` ("--max-data-size").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MAX_MESSAGE = 600  # characters in an error line


@dataclass(frozen=True)
class Name:
    """A setting in a message. `setting` is its name ("max_data_size", or
    the name of a file setting such as "out" or "log"); `words` is how a
    Python caller reads it ("output"), by default the name itself."""

    setting: str
    words: str = ""

    def __str__(self) -> str:
        return self.words or self.setting


Part = str | Name


class Text:
    """A line of text whose `Name`s the command line shows as flags."""

    def __init__(self, *parts: Part) -> None:
        self.parts = parts

    def __str__(self) -> str:
        return "".join(map(str, self.parts))

    def __bool__(self) -> bool:
        return any(map(str, self.parts))

    def worded(self, flag_of: Callable[[str], str]) -> str:
        """The text with each `Name` given by `flag_of` (e.g. settings.flag_of)."""
        return "".join(flag_of(p.setting) if isinstance(p, Name) else p for p in self.parts)


class WordedError(Exception):
    """An error whose message is a `Text`: `str(exc)` in settings' names,
    `exc.worded(flag_of)` in flags."""

    def __init__(self, *parts: Part) -> None:
        self.text = Text(*parts)
        super().__init__(str(self.text))

    def worded(self, flag_of: Callable[[str], str]) -> str:
        return self.text.worded(flag_of)


class UsageError(WordedError):
    """Bad input from the user: a file, a setting, a checkpoint. The message
    says what is wrong and where, in one line."""


def worded(message: object, flag_of: Callable[[str], str]) -> str:
    """Any message (a `Text`, a `WordedError`, anything else) for the command
    line: its settings named by `flag_of`."""
    text = message.text if isinstance(message, WordedError) else message
    return text.worded(flag_of) if isinstance(text, Text) else str(text)


def one_line(text: str) -> str:
    """A message as one bounded line, whatever paths or text it quotes: line
    breaks escaped, the middle of a long message elided."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= MAX_MESSAGE:
        return text
    keep = (MAX_MESSAGE - 5) // 2
    return f"{text[:keep]}[...]{text[-keep:]}"
