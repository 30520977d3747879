"""Read keepalived.conf into a tree of statements, keeping where each came from.

keepalived's configuration is line oriented: a statement is a keyword and its
arguments on one line, and a statement may own a `{ ... }` block of further
statements. Comments start with `#` or `!` anywhere outside quotes. `include GLOB`
splices other files in place (relative to the including file's directory, glob
matches in sorted order), which is why every token carries its own file and line:
an operator fixing a problem needs the file it is really in, not the top-level one.

The parser knows nothing about keyword meanings; `keepalived.py` converts the tree.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

INCLUDE_KEYWORDS = frozenset(
    {"include", "includer", "includem", "includew", "includeb", "includea"}
)
# `includer` tolerates a pattern that matches nothing; so does a pattern with wildcards
# under plain `include` (keepalived lets conf.d/*.conf be empty).
_INCLUDE_MAY_BE_EMPTY = frozenset({"include", "includer"})
MAX_INCLUDE_DEPTH = 32
MAX_FILE_BYTES = 16 * 1024 * 1024

_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
}


class KeepalivedParseError(Exception):
    """The file cannot be read as keepalived configuration; `str()` is `FILE:LINE: why`."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Token:
    """One word of the file; `quoted` tells a literal `"{"` from a block brace."""

    text: str
    file: str
    line: int
    quoted: bool = False

    @property
    def is_open(self) -> bool:
        return self.text == "{" and not self.quoted

    @property
    def is_close(self) -> bool:
        return self.text == "}" and not self.quoted


@dataclass
class Statement:
    """`keyword args... [{ block }]`; `block` is None when the statement has no braces."""

    keyword: Token
    args: list[Token] = field(default_factory=list)
    block: list[Statement] | None = None

    @property
    def name(self) -> str:
        return self.keyword.text

    @property
    def file(self) -> str:
        return self.keyword.file

    @property
    def line(self) -> int:
        return self.keyword.line

    @property
    def words(self) -> list[str]:
        return [t.text for t in self.args]

    def all_tokens(self) -> Iterator[Token]:
        """Keyword, arguments and every token inside the block, in file order."""
        yield self.keyword
        yield from self.args
        for child in self.block or ():
            yield from child.all_tokens()


@dataclass
class ParsedFile:
    """The statements of the top-level file and every file it read."""

    path: str
    statements: list[Statement]
    files: list[str]
    notes: list[str]


def _unescape(ch: str, text: str, i: int) -> tuple[str, int]:
    """Decode the escape starting after the backslash at text[i-1]; return (char, next i)."""
    if ch in _ESCAPES:
        return _ESCAPES[ch], i + 1
    if ch == "x":
        m = re.match(r"[0-9A-Fa-f]+", text[i + 1 :])
        if m:
            return chr(int(m.group(0), 16) & 0xFF), i + 1 + len(m.group(0))
        return "x", i + 1
    if ch in "01234567":
        m = re.match(r"[0-7]{1,3}", text[i:])
        assert m is not None
        return chr(int(m.group(0), 8) & 0xFF), i + len(m.group(0))
    if ch == "c" and i + 1 < len(text):
        return chr(ord(text[i + 1].upper()) ^ 0x40), i + 2
    return ch, i + 1


def split_line(text: str, file: str, line: int) -> list[Token]:
    """Split one line into tokens: quotes group, braces stand alone, comments end the line."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "#!":
            break
        if ch in "{}":
            tokens.append(Token(ch, file, line))
            i += 1
            continue
        word: list[str] = []
        quoted = False
        while i < n:
            ch = text[i]
            if ch.isspace() or ch in "{}#!":
                break
            if ch in "\"'":
                quote, i, quoted = ch, i + 1, True
                while i < n and text[i] != quote:
                    if text[i] == "\\" and i + 1 < n:
                        decoded, i = _unescape(text[i + 1], text, i + 1)
                        word.append(decoded)
                        continue
                    word.append(text[i])
                    i += 1
                if i >= n:
                    raise KeepalivedParseError(file, line, f"unterminated {quote} quoted string")
                i += 1
                continue
            word.append(ch)
            i += 1
        tokens.append(Token("".join(word), file, line, quoted))
    return tokens


def _expand_braces(pattern: str) -> list[str]:
    """csh-style `{a,b}` expansion, as glob(GLOB_BRACE) does for keepalived's include."""
    depth, start = 0, -1
    for i, ch in enumerate(pattern):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                inner, parts, level, last = pattern[start + 1 : i], [], 0, 0
                for j, c in enumerate(inner):
                    level += c == "{"
                    level -= c == "}"
                    if c == "," and level == 0:
                        parts.append(inner[last:j])
                        last = j + 1
                parts.append(inner[last:])
                if len(parts) == 1:
                    continue
                head, tail = pattern[:start], pattern[i + 1 :]
                out: list[str] = []
                for part in parts:
                    out.extend(_expand_braces(head + part + tail))
                return out
    return [pattern]


class _Reader:
    """Turns files into a flat token stream with include handling and a recursion guard."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.notes: list[str] = []
        self._stack: list[str] = []

    def read(self, path: str, where: Token | None = None) -> list[list[Token]]:
        """Return the tokens of each line, with included files' lines spliced in place."""
        real = os.path.realpath(path)
        if real in self._stack:
            chain = " -> ".join([*self._stack, real])
            assert where is not None
            raise KeepalivedParseError(where.file, where.line, f"include loop: {chain}")
        if len(self._stack) >= MAX_INCLUDE_DEPTH:
            assert where is not None
            raise KeepalivedParseError(
                where.file, where.line, f"includes nested deeper than {MAX_INCLUDE_DEPTH} files"
            )
        try:
            if os.path.getsize(path) > MAX_FILE_BYTES:
                raise KeepalivedParseError(path, None, "file is larger than 16 MiB")
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except IsADirectoryError:
            raise KeepalivedParseError(
                where.file if where else path,
                where.line if where else None,
                f"{path} is a directory, not a configuration file",
            ) from None
        except OSError as exc:
            if where is None:
                raise KeepalivedParseError(path, None, f"cannot read: {exc.strerror}") from None
            raise KeepalivedParseError(
                where.file, where.line, f"cannot read included file {path}: {exc.strerror}"
            ) from None
        self.files.append(path)
        self._stack.append(real)
        try:
            return self._lines(path, text)
        finally:
            self._stack.pop()

    def _lines(self, path: str, text: str) -> list[list[Token]]:
        out: list[list[Token]] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            stripped = raw.strip()
            first = stripped.split(None, 1)[0] if stripped else ""
            if first in INCLUDE_KEYWORDS:
                out.extend(self._include(path, number, first, stripped[len(first) :]))
                continue
            out.append(split_line(raw, path, number))
        return out

    def _include(self, path: str, number: int, keyword: str, rest: str) -> list[list[Token]]:
        where = Token(keyword, path, number)
        words = split_line(rest, path, number) if "{" not in rest else None
        if words is None:
            # brace expressions are part of the pattern here, not blocks
            pattern = re.split(r"\s[#!]", rest, maxsplit=1)[0].strip().strip("\"'")
        elif len(words) != 1:
            raise KeepalivedParseError(path, number, f"{keyword} takes one file name or pattern")
        else:
            pattern = words[0].text
        if not pattern:
            raise KeepalivedParseError(path, number, f"{keyword} needs a file name or pattern")
        base = os.path.dirname(path)
        matches: list[str] = []
        for expanded in _expand_braces(pattern):
            full = (
                expanded
                if os.path.isabs(expanded)
                else os.path.normpath(os.path.join(base, expanded))
            )
            if glob.has_magic(full):
                matches.extend(sorted(glob.glob(full)))
            elif os.path.exists(full):
                matches.append(full)
            else:
                raise KeepalivedParseError(
                    path, number, f"included file {full} does not exist; fix the path or remove it"
                )
        if not matches:
            if keyword not in _INCLUDE_MAY_BE_EMPTY:
                raise KeepalivedParseError(path, number, f"{keyword} {pattern}: no file matches")
            self.notes.append(f"{path}:{number}: {keyword} {pattern} matched no files")
        out: list[list[Token]] = []
        for match in matches:
            out.extend(self.read(match, where))
        return out


def _build(lines: list[list[Token]]) -> list[Statement]:
    """Group the token stream into statements and nested blocks, checking the braces."""
    root: list[Statement] = []
    stack: list[tuple[list[Statement], Token | None]] = [(root, None)]
    current: Statement | None = None  # statement still open on this line
    last: Statement | None = None  # most recent complete statement at this level
    last_tok: Token | None = None
    for tokens in lines:
        for tok in tokens:
            last_tok = tok
            if tok.is_open:
                owner = current or last
                if owner is None or owner.block is not None:
                    raise KeepalivedParseError(
                        tok.file, tok.line, "'{' without a keyword before it"
                    )
                owner.block = []
                stack.append((owner.block, tok))
                current = last = None
            elif tok.is_close:
                if len(stack) == 1:
                    raise KeepalivedParseError(
                        tok.file, tok.line, "'}' closes a block that was never opened"
                    )
                stack.pop()
                current = None
                last = stack[-1][0][-1] if stack[-1][0] else None
            elif current is None:
                current = Statement(tok)
                stack[-1][0].append(current)
            else:
                current.args.append(tok)
        if current is not None:
            last = current
        current = None
    if len(stack) > 1:
        opener = stack[-1][1]
        assert opener is not None
        end = f" (file ends at {last_tok.file}:{last_tok.line})" if last_tok else ""
        raise KeepalivedParseError(
            opener.file, opener.line, f"'{{' is never closed: add the missing '}}'{end}"
        )
    return root


def parse_file(path: str) -> ParsedFile:
    """Parse a keepalived.conf (and its includes); raises KeepalivedParseError."""
    reader = _Reader()
    chunks = reader.read(path)
    statements = _build(chunks)
    return ParsedFile(path, statements, reader.files, reader.notes)


def parse_text(text: str, path: str = "<string>") -> list[Statement]:
    """Parse configuration text (includes resolved relative to `path`'s directory)."""
    reader = _Reader()
    return _build(reader._lines(path, text))
