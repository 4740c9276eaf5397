"""Source spans and SpecError: every user-caused error points at a line and column of a spec."""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    path: str
    line: int
    column: int
    end_line: int
    end_column: int  # exclusive

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass
class Source:
    path: str
    text: str

    def line(self, number: int) -> str:
        lines = self.text.splitlines()
        return lines[number - 1] if 0 < number <= len(lines) else ""


_SOURCES: dict[str, Source] = {}


def register_source(path: str, text: str) -> Source:
    """Remembers a spec's text so that errors can quote its lines."""
    source = Source(path, text)
    _SOURCES[path] = source
    return source


class SpecError(Exception):
    """An error in a spec, located by a span; `format()` gives the mypy/rustc-style report."""

    def __init__(self, message: str, span: Span | None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.notes: list[str] = []

    def __str__(self) -> str:
        where = f"{self.span}: " if self.span else ""
        return f"{where}error: {self.message}"

    def format(self) -> str:
        lines = [str(self)]
        source = _SOURCES.get(self.span.path) if self.span else None
        if source is not None:
            text = source.line(self.span.line)
            number = str(self.span.line)
            gutter = " " * len(number)
            end = self.span.end_column if self.span.end_line == self.span.line else len(text) + 1
            width = max(1, end - self.span.column)
            lines.append(f" {number} | {text}")
            lines.append(f" {gutter} | {' ' * (self.span.column - 1)}{'^' * width}")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def closest(name: str, candidates) -> str | None:
    """The known name nearest to a misspelt one, for 'did you mean' hints."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates) -> str | None:
    match = closest(name, candidates)
    return f"did you mean `{match}`?" if match else None


class UsageError(SpecError):
    """A bad request about a spec (unknown model, bad --set value) rather than an error in its text."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, None, hint)
