"""Safe YAML loading that remembers where every value came from.

Content files are parsed with PyYAML's *safe* composer (no Python tags, no code), then turned into
plain data by hand so that each value's YAML path maps to its source line. Every problem becomes a
``ContentError`` whose ``str()`` is ``FILE:LINE: YAML-PATH: message``.

Choices (and why):

* Timestamps stay strings. YAML 1.1 would turn ``2024-01-02`` into a ``date``; content never needs
  dates, and a date object would only confuse schema checks and command rendering.
* Mapping keys are the key's text as written (``1:`` is the key ``"1"``), so YAML paths are strings.
* Duplicate keys are an error: PyYAML silently keeps the last one, which hides edits that did nothing.
* Aliases are expanded, but the whole document may produce at most ``MAX_NODES`` values, so an
  alias bomb or a self-referencing alias ends with a ContentError instead of eating memory.
* ``scalars`` keeps the exact text of every scalar: input-argument defaults are used as written
  (``1.50`` stays ``1.50``, ``yes`` stays ``yes``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ContentError

#: Upper bound on values produced from one document (guards alias expansion).
MAX_NODES = 200_000
#: Upper bound on a content file's size: the largest upstream atomics file is a few hundred KiB, and
#: parsing a multi-megabyte YAML file takes seconds and a lot of memory for nothing.
MAX_FILE_BYTES = 8 * 1024 * 1024

YamlPath = tuple[str | int, ...]

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


#: LibYAML's parser when PyYAML was built with it: the same safe composer, about 10x faster (validate
#: over the ~340 upstream technique files is dominated by parsing).
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeBase):  # type: ignore[misc,valid-type]
    """SafeLoader without the implicit timestamp resolver (dates stay strings)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def format_path(path: Iterable[str | int]) -> str:
    """``("atomic_tests", 0, "executor")`` -> ``atomic_tests[0].executor`` (empty path -> ``<root>``)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            plain = text.replace("_", "").replace("-", "").isalnum()
            out += (f".{text}" if out else text) if plain else f"[{text!r}]"
    return out or "<root>"


@dataclass(frozen=True, slots=True)
class YamlDoc:
    """A parsed document: plain ``data`` plus the source line of every value and key (1-based)."""

    file: str
    data: Any
    lines: dict[YamlPath, int]
    key_lines: dict[YamlPath, int]
    scalars: dict[YamlPath, str]
    #: (path, line, text) of ``#{...}`` that YAML read as a comment after a plain scalar
    #: (``command: del #{file}`` is the command ``del``): a classic atomics authoring slip.
    comment_placeholders: tuple[tuple[YamlPath, int, str], ...] = ()

    def line_of(self, path: YamlPath, *, key: bool = False) -> int:
        """Line of the value at ``path`` (or of its key when ``key``); the nearest ancestor otherwise."""
        table = self.key_lines if key else self.lines
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if key and probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), 1)

    def error(self, path: YamlPath, message: str, *, key: bool = False, hint: str | None = None) -> ContentError:
        return ContentError(message, file=self.file, line=self.line_of(path, key=key),
                            path=format_path(path), hint=hint)


def read_text(path: Path, *, display: str | None = None) -> str:
    """The file as text (UTF-8, BOM allowed), or ContentError naming the file."""
    shown = display or str(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(str(path))
        if path.exists() and not path.is_file():  # a FIFO or device would block or never end
            raise ContentError("is not a regular file, expected a YAML file", file=shown, hint="check the path")
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise ContentError("file not found", file=shown, hint="check the path") from exc
    except IsADirectoryError as exc:
        raise ContentError("is a directory, expected a YAML file", file=shown) from exc
    except OSError as exc:
        raise ContentError(f"cannot read file: {exc.strerror or exc}", file=shown) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ContentError(f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, too large for a content file",
                           file=shown, hint="check the path; atomics, expectations and lab files are small YAML")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ContentError("file is not UTF-8 text", file=shown, line=line,
                           hint="save it as UTF-8") from exc


def first_problem(problems: Sequence[ContentError], path: Path) -> ContentError:
    """The error a loader raises for a file with ``problems`` (at least one): the first, with a hint
    to run ``atomiclab validate`` when there are more."""
    first = problems[0]
    more = len(problems) - 1
    if not more:
        return first
    error = ContentError(first.message, file=first.file, line=first.line, path=first.path,
                         hint=f"{first.hint + '; ' if first.hint else ''}{more} more problem(s): "
                              f"run `atomiclab validate {path}`")
    error.__cause__ = first
    return error


def load_yaml(text: str, *, file: str) -> YamlDoc:
    """Parse one YAML document. An empty document yields ``data=None``."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from exc
    try:
        try:
            node = loader.get_single_node()
        except yaml.reader.ReaderError as exc:
            raise _reader_error(exc, text, file) from exc
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            what = exc.problem or exc.context or "invalid YAML"
            raise ContentError(f"invalid YAML: {what}", file=file, line=line,
                               hint="fix the YAML syntax") from exc
        except yaml.YAMLError as exc:
            raise ContentError(f"invalid YAML: {exc}", file=file, hint="fix the YAML syntax") from exc
        except RecursionError as exc:
            raise ContentError("YAML nesting is too deep", file=file) from exc
        builder = _Builder(loader, file)
        data = None if node is None else builder.build(node, ())
        return YamlDoc(file, data, builder.lines, builder.key_lines, builder.scalars,
                       _comment_placeholders(text, builder.plain_ends))
    finally:
        loader.dispose()


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str) -> ContentError:
    line = text[: exc.position].count("\n") + 1
    char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return ContentError(f"character {char!r} is not allowed in YAML", file=file, line=line,
                        hint="remove control characters from the file")


class _Builder:
    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.lines: dict[YamlPath, int] = {}
        self.key_lines: dict[YamlPath, int] = {}
        self.scalars: dict[YamlPath, str] = {}
        self.plain_ends: list[tuple[YamlPath, int, int]] = []  # (path, line0, column) of plain scalars
        self.count = 0
        self.active: set[int] = set()  # node ids on the current path (self-referencing aliases)

    def _err(self, node: yaml.Node, path: YamlPath, message: str) -> ContentError:
        return ContentError(message, file=self.file, line=node.start_mark.line + 1, path=format_path(path))

    def build(self, node: yaml.Node, path: YamlPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._err(node, path, f"document expands to more than {MAX_NODES} values (alias bomb?)")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in self.active:
            raise self._err(node, path, "YAML alias refers to itself")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ_TAG:
                    raise self._err(node, path, f"unsupported YAML tag {node.tag}")
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                if node.tag != _MAP_TAG:
                    raise self._err(node, path, f"unsupported YAML tag {node.tag}")
                return self._mapping(node, path)
        finally:
            self.active.discard(id(node))
        raise self._err(node, path, "unsupported YAML node")  # pragma: no cover - no other node kinds

    def _scalar(self, node: yaml.ScalarNode, path: YamlPath) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise self._err(node, path, f"unsupported YAML tag {node.tag!r}") from exc
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise self._err(node, path, f"invalid YAML value {node.value[:60]!r}: {detail}") from exc
        self.scalars[path] = node.value
        if not node.style:  # plain: None from PyYAML's parser, '' from LibYAML's
            self.plain_ends.append((path, node.end_mark.line, node.end_mark.column))
        return value

    def _mapping(self, node: yaml.MappingNode, path: YamlPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        pairs = list(node.value)
        # Merge keys (<<: *anchor) are expanded first so explicit keys override them, as in YAML.
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in pairs:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise self._err(value_node, path, "merge key (<<) needs a mapping")
                    merged.extend(source.value)
        explicit = [(k, v) for k, v in pairs if k.tag != "tag:yaml.org,2002:merge"]
        explicit_keys = {k.value for k, _ in explicit if isinstance(k, yaml.ScalarNode)}
        for key_node, value_node in merged:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value not in explicit_keys \
                    and key_node.value not in out:
                out[key_node.value] = self.build(value_node, (*path, key_node.value))
        seen: dict[str, int] = {}
        for key_node, value_node in explicit:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._err(key_node, path, "mapping keys must be plain scalars")
            key = key_node.value
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise self._err(key_node, child, f"duplicate key {key!r} (first at line {seen[key]})")
            seen[key] = line
            self.key_lines[child] = line
            self.lines[child] = value_node.start_mark.line + 1
            out[key] = self.build(value_node, child)
        return out


_COMMENTED_PLACEHOLDER = re.compile(r"\s#(\{[^{}\r\n]*\})")


def _comment_placeholders(text: str, ends: list[tuple[YamlPath, int, int]]) -> tuple[
        tuple[YamlPath, int, str], ...]:
    lines = text.splitlines()
    found: list[tuple[YamlPath, int, str]] = []
    for path, line0, column in ends:
        if line0 >= len(lines):
            continue
        match = _COMMENTED_PLACEHOLDER.match(lines[line0], column)
        if match:
            found.append((path, line0 + 1, "#" + match.group(1)))
    return tuple(found)
