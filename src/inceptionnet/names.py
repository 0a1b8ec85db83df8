"""Names that come from users' data (class names, file names) made safe where they are written.

The rule is written once, here: a class name is any text without control characters (a newline in
one would shift every line of a label file after it, a tab split a column); where a format gives
characters a meaning, the name is escaped for that format: Markdown (a model card's body),
matplotlib's text (a `$` pair would start mathtext), CSV cells (a cell starting with `=`, `+`, `-`
or `@` is a formula to a spreadsheet, so it gets a leading apostrophe, as OWASP advises). JSON and
the model card's YAML front matter (written as JSON, YAML's flow style) quote everything themselves.
This module imports nothing of the package: any layer may use it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def unprintable(names: Iterable[str]) -> list[str]:
    """The names (as repr) that are empty or hold a control character (newline, tab, NUL, ...)."""
    return [repr(name) for name in names if not name or any(unicodedata.category(c) == "Cc" for c in name)]


def markdown(text: str) -> str:
    """`text` as literal Markdown text: every character Markdown or HTML would read as syntax escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def plot_text(text: str) -> str:
    """`text` for matplotlib as it is: `$` escaped, so that no pair of them starts mathtext."""
    return text.replace("$", r"\$")


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a string starting like a formula gets a leading `'`."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
