"""Hanami's cluster-template format, version 1: parse it, check it and write it back.

A template names the bricks of a cluster (hexagonal cells on a 3-D grid), their neuron counts and
which of them receive the input and produce the output.  Hanami's documentation example::

    version: 1
    settings:
        neuron_cooldown: 100000000000.0
        refractory_time: 1
        max_connection_distance: 1
        enable_reduction: false
    bricks:
        1,1,1
            input: test_input
            number_of_neurons: 784
        2,1,1
            number_of_neurons: 400
        3,1,1
            output: test_output
            number_of_neurons: 10

The reader follows Hanami's lexer and grammar (spec §3.1-3.2): blanks and tabs are ignored, so
indentation carries no meaning; every non-blank line is one statement.  On top of Hanami it accepts
``#`` comments, Windows line endings and several input and output bricks, and it rejects templates
that Hanami would accept but that cannot work (see ``docs/template_format.md``).

Every problem raises :class:`TemplateError`, which carries the 1-based line number and says what was
expected and how to fix it.  :meth:`Template.dumps` writes a canonical form that Hanami can read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from os import PathLike

FORMAT_VERSION = 1

#: Limits.  They keep every index of a cluster inside an int32 and the target-brick walks cheap.
MAX_BRICKS = 4096
MAX_NEURONS_PER_BRICK = 2**24
MAX_TOTAL_NEURONS = 2**26
MAX_COORDINATE = 2**20
#: Hanami stores a brick name in ``char[128]``.
MAX_NAME_LENGTH = 127
#: Hanami truncates the refractory time to 8 bits; larger values would silently wrap around.
MAX_REFRACTORY_TIME = 255
#: Longer walks make no difference on grids of realistic size but cost time in compat mode.
MAX_CONNECTION_DISTANCE = 255
#: ``neuron_cooldown`` is a 32-bit float in the cluster.
MAX_NEURON_COOLDOWN = 3.4028234663852886e38

SETTING_NAMES = ("neuron_cooldown", "refractory_time", "max_connection_distance", "enable_reduction")
BRICK_KEYS = ("input", "output", "number_of_neurons", "encoding")
#: how an input brick turns readings into potentials, or how an output brick's targets are read
#: (docs/streams.md): "raw" (Hanami: the value itself) or "adaptive" (a range tracked per neuron)
ENCODINGS = ("raw", "adaptive")
BRICK_KINDS = ("input", "output", "hidden")

_DIGITS = frozenset("0123456789")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NAME_START = _LETTERS | {"_"}
_NAME_CHARS = _NAME_START | _DIGITS
_WORD_CHARS = _NAME_CHARS | {"-", "."}
_TRUE_WORDS = ("true", "True")
_FALSE_WORDS = ("false", "False")
# Hanami's lexer turns these into keyword tokens, so Hanami could not read them back as names.
_RESERVED_NAMES = frozenset(_TRUE_WORDS + _FALSE_WORDS + ("settings", "bricks"))


class TemplateError(ValueError):
    """A template that cannot be used.

    Attributes:
        reason: what is wrong and how to fix it, without the location.
        line: 1-based line number in the template text, or ``None`` when the problem has no line
            (empty text, a template built in code).
        source: the file name when the template came from a file, else ``None``.
    """

    def __init__(self, reason: str, line: int | None = None, source: str | None = None):
        self.reason = reason
        self.line = line
        self.source = source
        location = [part for part in (source, None if line is None else f"line {line}") if part]
        super().__init__(": ".join(location + [reason]))

    def __reduce__(self):
        return (type(self), (self.reason, self.line, self.source))


def _line_or_none(line: int) -> int | None:
    """Bricks built in code have line 0; errors about them have no line."""
    return line if line > 0 else None


# ------------------------------------------------------------------------------------------------
# Value checks, shared by the parser and by objects built in code


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_neuron_cooldown(value, line: int | None, shown: str | None = None) -> float:
    shown = repr(value) if shown is None else shown
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_NEURON_COOLDOWN:
        raise TemplateError(
            f"bad value '{shown}' for neuron_cooldown; expected a positive number (> 0) such as "
            f"1000000000.0 (the potential of a neuron is divided by it every cycle)",
            line,
        )
    return float(value)


def _check_refractory_time(value, line: int | None, shown: str | None = None) -> int:
    shown = repr(value) if shown is None else shown
    if not _is_int(value) or not 1 <= value <= MAX_REFRACTORY_TIME:
        raise TemplateError(
            f"bad value '{shown}' for refractory_time; expected a whole number from 1 to "
            f"{MAX_REFRACTORY_TIME} (1 = a neuron takes input in every cycle)",
            line,
        )
    return value


def _check_max_connection_distance(value, line: int | None, shown: str | None = None) -> int:
    shown = repr(value) if shown is None else shown
    if _is_int(value) and value == 0:
        raise TemplateError(
            f"bad value '{shown}' for max_connection_distance; expected a whole number from 1 to "
            f"{MAX_CONNECTION_DISTANCE}. Hanami accepts 0, but then the neurons of every brick can "
            f"only connect to their own brick and no signal ever reaches the output; use 1 to "
            f"connect each brick to its next neighbour",
            line,
        )
    if not _is_int(value) or not 1 <= value <= MAX_CONNECTION_DISTANCE:
        raise TemplateError(
            f"bad value '{shown}' for max_connection_distance; expected a whole number from 1 to "
            f"{MAX_CONNECTION_DISTANCE} (how many hexagons a connection may span)",
            line,
        )
    return value


def _check_enable_reduction(value, line: int | None, shown: str | None = None) -> bool:
    if not isinstance(value, bool):
        shown = repr(value) if shown is None else shown
        raise TemplateError(f"bad value '{shown}' for enable_reduction; expected true or false", line)
    return value


_SETTING_CHECKS = {
    "neuron_cooldown": _check_neuron_cooldown,
    "refractory_time": _check_refractory_time,
    "max_connection_distance": _check_max_connection_distance,
    "enable_reduction": _check_enable_reduction,
}


def _check_position(position, line: int | None) -> tuple[int, int, int]:
    try:
        position = tuple(position)
    except TypeError:
        position = (position,)
    if len(position) != 3 or not all(_is_int(c) for c in position):
        raise TemplateError(
            f"bad brick position {position!r}; expected three whole numbers (x, y, z)", line
        )
    if not all(0 <= c <= MAX_COORDINATE for c in position):
        raise TemplateError(
            f"bad brick position {position!r}; every coordinate must be from 0 to {MAX_COORDINATE}",
            line,
        )
    return position


def _check_name(name, line: int | None) -> str:
    if not isinstance(name, str) or not name or name[0] not in _NAME_START or not set(name) <= _NAME_CHARS:
        raise TemplateError(
            f"bad brick name '{name}'; a name starts with a letter or '_' and contains only "
            f"letters, digits and '_', e.g. 'pixels' or 'test_input'",
            line,
        )
    if len(name) > MAX_NAME_LENGTH:
        raise TemplateError(
            f"brick name '{name[:20]}...' is {len(name)} characters long; at most "
            f"{MAX_NAME_LENGTH} are allowed, choose a shorter name",
            line,
        )
    if name in _RESERVED_NAMES:
        raise TemplateError(
            f"'{name}' is a keyword of the format and cannot be a brick name; choose another name", line
        )
    return name


_HIDDEN_ENCODING = (
    "'encoding' belongs to input and output bricks (how readings enter, how targets are read); "
    "a hidden brick has none: delete the line"
)


def _bad_encoding(encoding) -> str:
    return (
        f"bad value '{encoding}' for encoding; expected one of {', '.join(ENCODINGS)} "
        "('adaptive' learns each neuron's range online, 'raw' takes values as they are)"
    )


def _check_encoding(encoding, kind: str, line: int | None) -> str:
    if kind == "hidden":
        raise TemplateError(_HIDDEN_ENCODING, line)
    if encoding not in ENCODINGS:
        raise TemplateError(_bad_encoding(encoding), line)
    return encoding


def _check_neuron_count(count, line: int | None, shown: str | None = None) -> int:
    shown = repr(count) if shown is None else shown
    if not _is_int(count) or not 1 <= count <= MAX_NEURONS_PER_BRICK:
        raise TemplateError(
            f"bad value '{shown}' for number_of_neurons; expected a whole number from 1 to "
            f"{MAX_NEURONS_PER_BRICK}",
            line,
        )
    return count


# ------------------------------------------------------------------------------------------------
# The objects


@dataclass(frozen=True)
class Settings:
    """Cluster-wide settings of a template (spec §3.2); the defaults are Hanami's.

    Attributes:
        neuron_cooldown: every cycle a hidden neuron's potential is divided by this (> 0).  The
            default 1e9 makes the carry-over between samples negligible.
        refractory_time: cycles between two inputs of a hidden neuron (1 = every cycle), 1..255.
        max_connection_distance: how many hexagons a connection may span, 1..255.
        enable_reduction: whether rarely useful synapses are removed during training.
        spelling: ``(name, text)`` of every setting as written in the template, in written order.
            Only :meth:`Template.dumps` uses it, to write settings back exactly as they were; it
            takes no part in equality.
    """

    neuron_cooldown: float = 1e9
    refractory_time: int = 1
    max_connection_distance: int = 1
    enable_reduction: bool = False
    spelling: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self):
        for name in SETTING_NAMES:
            object.__setattr__(self, name, _SETTING_CHECKS[name](getattr(self, name), None))
        spelling = tuple((str(name), str(text)) for name, text in self.spelling)
        names = [name for name, _ in spelling]
        if not set(names) <= set(SETTING_NAMES) or len(set(names)) != len(names):
            raise TemplateError(
                f"bad settings spelling {spelling!r}; expected each of {', '.join(SETTING_NAMES)} "
                f"at most once"
            )
        object.__setattr__(self, "spelling", spelling)


@dataclass(frozen=True)
class Brick:
    """One hexagonal brick of a template.

    Attributes:
        position: ``(x, y, z)`` grid coordinates, each 0..MAX_COORDINATE.
        kind: ``"input"``, ``"output"`` or ``"hidden"``.
        name: the name from ``input: NAME`` / ``output: NAME``; ``None`` for hidden bricks.
        number_of_neurons: neurons in the brick, 1..MAX_NEURONS_PER_BRICK.
        line: line of the brick's coordinates in the template text, 0 for a brick built in code.
            It takes no part in equality.
        encoding: input and output bricks only: ``"raw"``, ``"adaptive"``, or ``None`` (not
            given: the cluster's default, see docs/streams.md).
    """

    position: tuple[int, int, int]
    kind: str
    name: str | None
    number_of_neurons: int
    line: int = field(default=0, compare=False)
    encoding: str | None = None

    def __post_init__(self):
        line = _line_or_none(self.line)
        object.__setattr__(self, "position", _check_position(self.position, line))
        if self.kind not in BRICK_KINDS:
            raise TemplateError(
                f"bad brick kind {self.kind!r}; expected one of {', '.join(BRICK_KINDS)}", line
            )
        if self.kind == "hidden" and self.name is not None:
            raise TemplateError(f"a hidden brick has no name, but got {self.name!r}; pass name=None", line)
        if self.kind != "hidden":
            _check_name(self.name, line)
        _check_neuron_count(self.number_of_neurons, line)
        if self.encoding is not None:
            _check_encoding(self.encoding, self.kind, line)

    @property
    def is_input(self) -> bool:
        return self.kind == "input"

    @property
    def is_output(self) -> bool:
        return self.kind == "output"

    def describe(self) -> str:
        """``"brick at line 7 (1,1,1)"``, or ``"brick (1,1,1)"`` for a brick built in code."""
        where = ",".join(map(str, self.position))
        return f"brick at line {self.line} ({where})" if self.line > 0 else f"brick ({where})"


@dataclass(frozen=True)
class Template:
    """A parsed and checked cluster template.

    Build one with :meth:`parse` or :meth:`from_file`, or in code:
    ``Template((Brick((1, 1, 1), "input", "x", 4), Brick((2, 1, 1), "output", "y", 2)))``.

    Attributes:
        bricks: the bricks in template order; a brick's index here is its brick id.
        settings: the cluster settings.
    """

    bricks: tuple[Brick, ...]
    settings: Settings = Settings()

    def __post_init__(self):
        bricks = tuple(self.bricks)
        if not all(isinstance(brick, Brick) for brick in bricks):
            raise TemplateError("Template.bricks must contain only Brick objects")
        if not isinstance(self.settings, Settings):
            raise TemplateError("Template.settings must be a Settings object")
        object.__setattr__(self, "bricks", bricks)
        _check_bricks(bricks, header_line=None)

    # -- reading and writing ------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str, source: str | None = None) -> Template:
        """Parse template text.  ``source`` (e.g. a file name) is only used in error messages.

        Raises:
            TemplateError: with the line number, what was expected and how to fix it.
        """
        return _Parser(text, source).parse()

    @classmethod
    def from_file(cls, path: str | PathLike) -> Template:
        """Read and parse a UTF-8 template file."""
        with open(path, encoding="utf-8", newline="") as file:
            text = file.read()
        return cls.parse(text, source=str(path))

    def dumps(self) -> str:
        """The template in canonical form: ``version: 1``, the settings block (only if any setting
        was given, in written order and spelling), ``bricks:``, each brick as its coordinates
        indented by 4 blanks and its entries indented by 8.  ``Template.parse(t.dumps()) == t``.
        """
        lines = ["version: 1"]
        setting_lines = _setting_lines(self.settings)
        if setting_lines:
            lines.append("settings:")
            lines.extend(f"    {name}: {text}" for name, text in setting_lines)
        lines.append("bricks:")
        for brick in self.bricks:
            lines.append("    " + ",".join(map(str, brick.position)))
            if brick.kind != "hidden":
                lines.append(f"        {brick.kind}: {brick.name}")
            lines.append(f"        number_of_neurons: {brick.number_of_neurons}")
            if brick.encoding is not None:
                lines.append(f"        encoding: {brick.encoding}")
        return "\n".join(lines) + "\n"

    # -- summaries ----------------------------------------------------------------------------

    @property
    def input_bricks(self) -> list[Brick]:
        """Input bricks in template order."""
        return [brick for brick in self.bricks if brick.kind == "input"]

    @property
    def output_bricks(self) -> list[Brick]:
        """Output bricks in template order."""
        return [brick for brick in self.bricks if brick.kind == "output"]

    @property
    def n_inputs(self) -> int:
        """Number of input values of one sample: the neurons of all input bricks."""
        return sum(brick.number_of_neurons for brick in self.input_bricks)

    @property
    def n_outputs(self) -> int:
        """Number of output values: the neurons of all output bricks."""
        return sum(brick.number_of_neurons for brick in self.output_bricks)

    @property
    def n_neurons(self) -> int:
        """Neurons of all bricks."""
        return sum(brick.number_of_neurons for brick in self.bricks)


def _check_bricks(bricks: tuple[Brick, ...], header_line: int | None) -> None:
    """Checks that concern several bricks.  ``header_line`` is the line of ``bricks:``."""
    if not bricks:
        raise TemplateError(
            "the template has no bricks; add at least one input and one output brick", header_line
        )
    if len(bricks) > MAX_BRICKS:
        raise TemplateError(
            f"too many bricks: at most {MAX_BRICKS} are allowed", _line_or_none(bricks[MAX_BRICKS].line)
        )
    total = 0
    by_position: dict[tuple[int, int, int], Brick] = {}
    by_name: dict[str, Brick] = {}
    for brick in bricks:
        line = _line_or_none(brick.line)
        total += brick.number_of_neurons
        if total > MAX_TOTAL_NEURONS:
            raise TemplateError(
                f"too many neurons: with this brick the template has {total}, at most "
                f"{MAX_TOTAL_NEURONS} are allowed; use fewer neurons per brick",
                line,
            )
        where = ",".join(map(str, brick.position))
        if brick.position in by_position:
            raise TemplateError(
                f"brick position {where} is already used by the {by_position[brick.position].describe()}; "
                f"every brick needs its own position",
                line,
            )
        by_position[brick.position] = brick
        if brick.name is not None:
            if brick.name in by_name:
                raise TemplateError(
                    f"brick name '{brick.name}' is already used by the {by_name[brick.name].describe()}; "
                    f"every input and output brick needs its own name",
                    line,
                )
            by_name[brick.name] = brick
    if not any(brick.kind == "input" for brick in bricks):
        raise TemplateError(
            "the template has no input brick; add 'input: NAME' to the brick that receives the data",
            header_line,
        )
    if not any(brick.kind == "output" for brick in bricks):
        raise TemplateError(
            "the template has no output brick; add 'output: NAME' to the brick that gives the result",
            header_line,
        )


# ------------------------------------------------------------------------------------------------
# Writing settings


def _format_float(value: float) -> str:
    """Positional notation with at least one decimal: the format has no exponents."""
    text = format(Decimal(repr(value)), "f")
    return text if "." in text else text + ".0"


def _format_setting(name: str, value) -> str:
    if name == "enable_reduction":
        return "true" if value else "false"
    if name == "neuron_cooldown":
        return _format_float(value)
    return str(value)


def _spelling_means(name: str, text: str, value) -> bool:
    """Whether the recorded spelling still denotes the current value (it may be stale after
    ``dataclasses.replace``)."""
    try:
        if name == "enable_reduction":
            return (text in _TRUE_WORDS and value is True) or (text in _FALSE_WORDS and value is False)
        if name == "neuron_cooldown":
            return _token_kind(text) in ("number", "float") and float(text) == value
        return _token_kind(text) == "number" and int(text) == value
    except ValueError:
        return False


def _setting_lines(settings: Settings) -> list[tuple[str, str]]:
    """``(name, text)`` of the settings to write: the written ones first, in their order and
    spelling, then any other value that differs from the default."""
    lines = []
    for name, text in settings.spelling:
        value = getattr(settings, name)
        lines.append((name, text if _spelling_means(name, text, value) else _format_setting(name, value)))
    written = {name for name, _ in settings.spelling}
    for item in dataclasses.fields(Settings):
        name = item.name
        if name in SETTING_NAMES and name not in written and getattr(settings, name) != item.default:
            lines.append((name, _format_setting(name, getattr(settings, name))))
    return lines


# ------------------------------------------------------------------------------------------------
# Lexer: text -> significant lines of tokens


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "float", "bool", "word", "other", "," or ":"
    text: str


@dataclass(frozen=True)
class _Line:
    number: int  # 1-based
    text: str  # without comment and surrounding blanks, for messages
    tokens: tuple[_Token, ...]


def _token_kind(word: str) -> str:
    """Classify a run of word characters like Hanami's lexer: NUMBER ``-?[0-9]+``, FLOAT
    ``-?[0-9]+.[0-9]+``, true/false, IDENT ``[A-Za-z_0-9]+``; anything else is "other"."""
    unsigned = word[1:] if word.startswith("-") else word
    integer, dot, fraction = unsigned.partition(".")
    if integer and set(integer) <= _DIGITS:
        if not dot:
            return "number"
        if fraction and set(fraction) <= _DIGITS:
            return "float"
    if word in _TRUE_WORDS or word in _FALSE_WORDS:
        return "bool"
    if set(word) <= _NAME_CHARS:
        return "word"
    return "other"


def _tokenize(content: str, number: int, source: str | None) -> tuple[_Token, ...]:
    tokens = []
    position = 0
    while position < len(content):
        char = content[position]
        if char in " \t":
            position += 1
        elif char in ",:":
            tokens.append(_Token(char, char))
            position += 1
        elif char in _WORD_CHARS:
            end = position
            while end < len(content) and content[end] in _WORD_CHARS:
                end += 1
            word = content[position:end]
            tokens.append(_Token(_token_kind(word), word))
            position = end
        else:
            raise TemplateError(
                f"unexpected character {char!r} in column {position + 1}; a template contains only "
                f"letters, digits, '_', '-', '.', ',', ':', blanks and '#' comments",
                number,
                source,
            )
    return tuple(tokens)


def _lex(text: str, source: str | None) -> list[_Line]:
    """Split the text into lines, drop comments and blank lines, tokenize the rest."""
    text = text.removeprefix("\ufeff")  # a byte-order mark left by some Windows editors
    lines = []
    # split("\n") rather than splitlines(): the latter also breaks at form feeds and other
    # characters, which would shift the line numbers that errors report.
    for number, raw in enumerate(text.split("\n"), start=1):
        content = raw.removesuffix("\r").split("#", 1)[0]
        tokens = _tokenize(content, number, source)
        if tokens:
            lines.append(_Line(number, content.strip(" \t"), tokens))
    return lines


# ------------------------------------------------------------------------------------------------
# Parser: significant lines -> Template


def _is_header(line: _Line, name: str) -> bool:
    """``settings:`` or ``bricks:`` alone on a line."""
    return len(line.tokens) == 2 and line.tokens[0].text == name and line.tokens[1].kind == ":"


def _looks_like_key_value(line: _Line) -> bool:
    tokens = line.tokens
    return len(tokens) >= 2 and tokens[0].kind in ("word", "bool") and tokens[1].kind == ":"


class _Parser:
    """Reads the significant lines in order: version, optional settings block, bricks block."""

    def __init__(self, text: str, source: str | None):
        if not isinstance(text, str):
            raise TypeError(f"Template.parse expects a str, got {type(text).__name__}")
        self.source = source
        self.lines = _lex(text, source)
        self.position = 0

    # -- helpers ------------------------------------------------------------------------------

    def error(self, reason: str, line: int | None) -> TemplateError:
        return TemplateError(reason, line, self.source)

    def peek(self) -> _Line | None:
        return self.lines[self.position] if self.position < len(self.lines) else None

    def next(self) -> _Line | None:
        line = self.peek()
        if line is not None:
            self.position += 1
        return line

    def key_value(self, line: _Line, expected: str) -> tuple[str, _Token]:
        """Split a ``key: value`` line; ``expected`` describes the line for the error message."""
        if not _looks_like_key_value(line):
            hint = "; did you forget the 'bricks:' line above the bricks?" if "," in line.text else ""
            raise self.error(f"expected {expected} but found '{line.text}'{hint}", line.number)
        key = line.tokens[0].text
        if len(line.tokens) != 3 or line.tokens[2].kind in (",", ":"):
            raise self.error(f"expected '{key}: VALUE' (one value) but found '{line.text}'", line.number)
        return key, line.tokens[2]

    # -- grammar ------------------------------------------------------------------------------

    def parse(self) -> Template:
        first = self.next()
        if first is None:
            raise self.error(
                "the template is empty; expected 'version: 1' on the first line, then a 'bricks:' "
                "block with at least one input and one output brick",
                None,
            )
        self.parse_version(first)

        settings = Settings()
        line = self.peek()
        if line is not None and _is_header(line, "settings"):
            self.next()
            settings = self.parse_settings(line)

        header = self.next()
        if header is None:
            last = self.lines[-1].number
            raise self.error(
                "the template ends without a 'bricks:' block; add 'bricks:' followed by the bricks",
                last,
            )
        if not _is_header(header, "bricks"):
            if _looks_like_key_value(header) and header.tokens[0].text in SETTING_NAMES:
                raise self.error(
                    f"setting '{header.tokens[0].text}' must be inside a 'settings:' block; add the "
                    f"line 'settings:' above it",
                    header.number,
                )
            raise self.error(f"expected 'settings:' or 'bricks:' but found '{header.text}'", header.number)

        bricks = self.parse_bricks(header)
        # Check here first so that errors about the whole brick list name the 'bricks:' line.
        try:
            _check_bricks(bricks, header.number)
        except TemplateError as problem:
            raise self.error(problem.reason, problem.line) from None
        return Template(bricks, settings)

    def parse_version(self, line: _Line) -> None:
        tokens = line.tokens
        if tokens[0].text != "version":
            raise self.error(
                f"expected 'version: 1' as the first line but found '{line.text}'; add the line "
                f"'version: 1' at the top",
                line.number,
            )
        if len(tokens) != 3 or tokens[1].kind != ":" or tokens[2].kind != "number":
            raise self.error(f"expected 'version: 1' but found '{line.text}'", line.number)
        if int(tokens[2].text) != FORMAT_VERSION:
            raise self.error(
                f"unsupported template version {tokens[2].text}; only 'version: 1' exists, change "
                f"the line to 'version: 1'",
                line.number,
            )

    def parse_settings(self, header: _Line) -> Settings:
        values: dict[str, object] = {}
        spelling: list[tuple[str, str]] = []
        first_line: dict[str, int] = {}
        while (line := self.peek()) is not None and not _is_header(line, "bricks"):
            self.next()
            if _is_header(line, "settings"):
                raise self.error(
                    f"second 'settings:' line (the first is line {header.number}); put all settings "
                    f"into one block",
                    line.number,
                )
            name, token = self.key_value(line, "a setting 'name: value' or 'bricks:'")
            if name not in SETTING_NAMES:
                raise self.error(
                    f"unknown setting '{name}'; expected one of {', '.join(SETTING_NAMES)}", line.number
                )
            if name in first_line:
                raise self.error(
                    f"setting '{name}' is given twice (first on line {first_line[name]}); keep one",
                    line.number,
                )
            first_line[name] = line.number
            values[name] = self.setting_value(name, token, line.number)
            spelling.append((name, token.text))
        if not spelling:
            raise self.error(
                "the 'settings:' block is empty; add settings below it or delete the 'settings:' line",
                header.number,
            )
        return Settings(**values, spelling=tuple(spelling))

    def setting_value(self, name: str, token: _Token, line: int):
        """Convert the token like Hanami's grammar does, then check the range."""
        check = _SETTING_CHECKS[name]
        try:
            if name == "enable_reduction":
                value = token.text in _TRUE_WORDS if token.kind == "bool" else token.text
            elif name == "neuron_cooldown":
                if token.kind not in ("number", "float"):
                    hint = ""
                    if "e" in token.text.lower() and token.text[:1].isdigit():
                        hint = " (exponents such as 1e9 are not part of the format; write 1000000000.0)"
                    raise self.error(
                        f"bad value '{token.text}' for neuron_cooldown; expected a positive number "
                        f"such as 1000000000.0{hint}",
                        line,
                    )
                value = float(token.text)
            else:
                value = int(token.text) if token.kind == "number" else token.text
            return check(value, line, token.text)
        except TemplateError as error:
            raise self.error(error.reason, line) from None

    def parse_bricks(self, header: _Line) -> tuple[Brick, ...]:
        bricks: list[Brick] = []
        current: _BrickDraft | None = None
        while (line := self.next()) is not None:
            if _looks_like_key_value(line):
                key = line.tokens[0].text
                if _is_header(line, "bricks"):
                    raise self.error(
                        f"second 'bricks:' line (the first is line {header.number}); delete it",
                        line.number,
                    )
                if _is_header(line, "settings"):
                    raise self.error(
                        "the 'settings:' block must come before 'bricks:'; move it up", line.number
                    )
                if current is None:
                    raise self.error(
                        f"expected brick coordinates such as 1,1,1 but found '{line.text}'; every "
                        f"brick starts with its position x,y,z on a line of its own",
                        line.number,
                    )
                _, value = self.key_value(line, "an entry 'key: value'")
                current.add(key, value, line.number)
            else:
                if current is not None:
                    bricks.append(current.finish())
                current = _BrickDraft(self.parse_position(line), line.number, self)
        if current is not None:
            bricks.append(current.finish())
        if not bricks:
            raise self.error(
                "the 'bricks:' block has no bricks; add at least an input and an output brick, "
                "each as coordinates x,y,z followed by its entries",
                header.number,
            )
        return tuple(bricks)

    def parse_position(self, line: _Line) -> tuple[int, int, int]:
        tokens = line.tokens
        if tokens[0].kind not in ("number", "float") and "," not in line.text:
            raise self.error(
                f"expected brick coordinates x,y,z or an entry 'key: value' but found '{line.text}'",
                line.number,
            )
        shaped = (
            len(tokens) == 5
            and [token.kind for token in tokens[1::2]] == [",", ","]
            and all(token.kind == "number" for token in tokens[0::2])
        )
        if not shaped:
            raise self.error(
                f"bad brick coordinates '{line.text}'; expected three whole numbers x,y,z separated "
                f"by commas, such as 1,1,1",
                line.number,
            )
        position = tuple(int(token.text) for token in tokens[0::2])
        if any(c < 0 for c in position):
            raise self.error(
                f"bad brick coordinates '{line.text}'; coordinates cannot be negative", line.number
            )
        if any(c > MAX_COORDINATE for c in position):
            raise self.error(
                f"bad brick coordinates '{line.text}'; every coordinate must be at most {MAX_COORDINATE}",
                line.number,
            )
        return position


class _BrickDraft:
    """The entries of the brick being read, checked one line at a time."""

    def __init__(self, position: tuple[int, int, int], line: int, parser: _Parser):
        self.position = position
        self.line = line
        self.parser = parser
        self.kind = "hidden"
        self.kind_line = 0
        self.name: str | None = None
        self.number_of_neurons: int | None = None
        self.neurons_line = 0
        self.encoding: str | None = None
        self.encoding_line = 0

    def add(self, key: str, value: _Token, line: int) -> None:
        error = self.parser.error
        if key in ("input", "output"):
            if self.kind == key:
                raise error(
                    f"'{key}:' is given twice for this brick (first on line {self.kind_line}); keep one",
                    line,
                )
            if self.kind != "hidden":
                raise error(
                    f"a brick cannot be both input and output (line {self.kind_line} already made it "
                    f"an {self.kind} brick); put the {key} into a brick of its own",
                    line,
                )
            try:
                self.name = _check_name(value.text, line)
            except TemplateError as problem:
                raise error(problem.reason, line) from None
            self.kind, self.kind_line = key, line
        elif key == "number_of_neurons":
            if self.number_of_neurons is not None:
                raise error(
                    f"'number_of_neurons:' is given twice for this brick (first on line "
                    f"{self.neurons_line}); keep one",
                    line,
                )
            count = int(value.text) if value.kind == "number" else value.text
            try:
                self.number_of_neurons = _check_neuron_count(count, line, value.text)
            except TemplateError as problem:
                raise error(problem.reason, line) from None
            self.neurons_line = line
        elif key == "encoding":
            if self.encoding is not None:
                raise error(
                    f"'encoding:' is given twice for this brick (first on line {self.encoding_line}); keep one",
                    line,
                )
            if value.text not in ENCODINGS:
                raise error(_bad_encoding(value.text), line)
            self.encoding, self.encoding_line = value.text, line
        else:
            hint = ""
            if key in SETTING_NAMES:
                hint = "; settings belong in the 'settings:' block before 'bricks:'"
            raise error(f"unknown brick key '{key}'; expected one of {', '.join(BRICK_KEYS)}{hint}", line)

    def finish(self) -> Brick:
        if self.number_of_neurons is None:
            where = ",".join(map(str, self.position))
            raise self.parser.error(
                f"brick {where} has no 'number_of_neurons'; add a line 'number_of_neurons: N' "
                f"below its coordinates",
                self.line,
            )
        if self.encoding is not None and self.kind == "hidden":
            raise self.parser.error(_HIDDEN_ENCODING, self.encoding_line)
        return Brick(self.position, self.kind, self.name, self.number_of_neurons, self.line, self.encoding)
