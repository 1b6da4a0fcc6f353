"""``--expect``: one small check language shared by every command.

``cert.days>=30``, ``tls.version>=1.2``, ``banner~"^SSH-2.0"``, ``!chain.complete``: a check
names a *fact* a run measured. Every fact lives in one catalogue (:data:`FACTS`) with its
kind, meaning and the commands that measure it, so the parser, the docs (:func:`describe`)
and each command agree on the names. The kind decides which operators and values a check
may use; all values are normalised at parse time (durations to milliseconds, versions to
OpenSSL's spelling), so a check's canonical form (``str()``) parses back to an equal one.

Parsing is pure and happens before anything is dialled: a mistake is a usage error (exit 2)
with a one-line message, not a failed run. :meth:`Expectation.check` then compares against
the facts the run produced. Every command imports this module, so it is stdlib only and
compiles no regex (nor imports difflib) until a check needs one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    import re

Kind = Literal["duration", "percent", "number", "version", "text", "flag"]
DURATION: Kind = "duration"  # int | float milliseconds; input units us, µs, ms, s
PERCENT: Kind = "percent"    # int | float percent points, 0..100
NUMBER: Kind = "number"      # int | float, optionally counted in the fact's unit
VERSION: Kind = "version"    # OpenSSL's protocol string: "TLSv1.3", "SSLv3"
TEXT: Kind = "text"          # str: exact compare or regex search
FLAG: Kind = "flag"          # bool

#: The commands whose runs produce facts.
COMMANDS = frozenset({"connect", "probe", "starttls", "ping", "bench"})

#: What a check says when the run has no value for its fact (cert.days on plain TCP).
NOT_MEASURED = "not measured"


class Fact(NamedTuple):
    """One fact a command measures and an --expect can name."""

    name: str
    kind: Kind
    meaning: str
    commands: frozenset[str]
    unit: str = ""     # NUMBER only: what it counts ("days"); d/day/days may follow a value
    example: str = ""  # a check shown when one is written wrong


#: A check for each kind, shown in error messages when the fact names none of its own.
_EXAMPLE_TAIL: dict[Kind, str] = {
    DURATION: "<200ms", PERCENT: "<=1%", NUMBER: ">=1", VERSION: ">=1.2", TEXT: "=...",
    FLAG: ""}


def _fact(name: str, kind: Kind, meaning: str, commands: str, unit: str = "",
          example: str = "") -> Fact:
    return Fact(name, kind, meaning, frozenset(commands.split()), unit,
                example or name + _EXAMPLE_TAIL[kind])


_LAT = "latency"  # ping: connect time per probe; bench: time per operation
#: Every fact any command measures: the one place for their names.
FACTS: tuple[Fact, ...] = (
    _fact("connect.ms", DURATION, "TCP connect time (the winning attempt)",
          "connect starttls ping probe", example="connect.ms<200"),
    _fact("resolve.ms", DURATION, "DNS resolution time", "connect starttls ping"),
    _fact("tls.ms", DURATION, "TLS handshake time", "connect starttls ping"),
    _fact("total.ms", DURATION, "whole run, dial to close", "connect starttls"),
    _fact("rtt.ms", DURATION, "the kernel's smoothed RTT (Linux TCP_INFO)", "connect ping"),
    _fact("tls.version", VERSION, "negotiated TLS version", "connect starttls ping"),
    _fact("tls.cipher", TEXT, "negotiated cipher suite (OpenSSL's name)", "connect starttls",
          example="tls.cipher~GCM"),
    _fact("alpn", TEXT, "negotiated ALPN protocol", "connect starttls", example="alpn=h2"),
    _fact("verified", FLAG, "certificate chain and name verified", "connect starttls ping"),
    _fact("cert.days", NUMBER, "days left on the leaf certificate", "connect starttls ping",
          unit="days", example="cert.days>=30"),
    _fact("chain.days", NUMBER, "fewest days left on any certificate the server sent",
          "connect starttls", unit="days", example="chain.days>=30"),
    _fact("chain.complete", FLAG, "the server sent every intermediate", "connect starttls"),
    _fact("banner", TEXT, "first bytes the server sent (decoded as text)", "connect probe",
          example='banner~"^SSH-2.0"'),
    _fact("starttls", FLAG, "the server offered STARTTLS", "starttls"),
    # probe's words before this language: every port open / none open.
    _fact("open", FLAG, "every probed port is open", "probe"),
    _fact("closed", FLAG, "no probed port is open", "probe"),
    _fact("ports.open", NUMBER, "open ports found", "probe", example="ports.open>=1"),
    _fact("ports.closed", NUMBER, "closed ports found", "probe"),
    _fact("ports.filtered", NUMBER, "filtered ports found (no answer)", "probe"),
    _fact("sent", NUMBER, "attempts made", "ping"),
    _fact("ok", NUMBER, "attempts that succeeded", "ping"),
    _fact("failed", NUMBER, "attempts that failed", "ping"),
    _fact("loss", PERCENT, "share of attempts that failed", "ping bench"),
    _fact("min", DURATION, f"lowest {_LAT}", "ping bench"),
    _fact("avg", DURATION, f"mean {_LAT}", "ping bench"),
    _fact("max", DURATION, f"highest {_LAT}", "ping bench"),
    _fact("mdev", DURATION, f"standard deviation of the {_LAT} (ping's mdev)", "ping"),
    _fact("p50", DURATION, f"median {_LAT}", "ping bench"),
    _fact("p90", DURATION, f"90th percentile {_LAT}", "ping bench"),
    _fact("p99", DURATION, f"99th percentile {_LAT}", "ping bench", example="p99<50ms"),
    _fact("p999", DURATION, f"99.9th percentile {_LAT}", "bench"),
    _fact("errors", NUMBER, "operations that failed", "bench", example="errors=0"),
    _fact("rate", NUMBER, "operations completed per second", "bench", example="rate>=1000"),
)
_BY_NAME: dict[str, Fact] = {fact.name: fact for fact in FACTS}

#: Names starttls --expect accepted before this language: still accepted everywhere.
ALIASES: dict[str, str] = {"tls": "tls.version", "days-left": "cert.days"}

#: What --help and a usage error can show.
GRAMMAR = """\
--expect CHECK, repeatable: every CHECK must hold. A CHECK is
  NAME OP VALUE   OP: = != < <= > >= (numbers, durations, versions)
                      = != (text, exact) ~ !~ (text, regex search)
  NAME or !NAME   a yes/no fact holds, or does not (also NAME=true|false)
VALUE: 50ms 1.5s 800us (no unit: ms), 1%, 30 or 30d, 1.2 or TLSv1.2 or SSLv3,
  a word, or "quoted text" (\\" \\' \\\\ escape)
e.g. cert.days>=30  tls.version>=1.2  connect.ms<200  banner~"^SSH-2.0"  !chain.complete"""

_ORDER_OPS = ("=", "!=", "<", "<=", ">", ">=")
_TEXT_OPS = ("=", "!=", "~", "!~")
_OPS = ("==", "!=", "<=", ">=", "!~", "=", "<", ">", "~")  # longest first
_OP_START = frozenset("=!<>~")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NAME_CHARS = _LETTERS | frozenset("0123456789-")
_DIGITS = frozenset("0123456789")
_QUOTES = ("'", '"')
_FORMS = "write NAME OP VALUE, NAME or !NAME, e.g. cert.days>=30"

#: Protocol versions in wire order ((3, 1) is TLS 1.0), so SSLv3 < TLSv1.0 < ... < TLSv1.3.
#: OpenSSL spells TLS 1.0 "TLSv1".
_VERSION_ORDER: dict[str, tuple[int, int]] = {
    "SSLv2": (2, 0), "SSLv3": (3, 0), "TLSv1": (3, 1), "TLSv1.0": (3, 1), "TLSv1.1": (3, 2),
    "TLSv1.2": (3, 3), "TLSv1.3": (3, 4)}
_DURATION_SHIFT = {"": 0, "ms": 0, "s": 3, "us": -3, "µs": -3, "μs": -3}  # powers of ten
_DAY_UNITS = ("d", "day", "days")
_FLAG_WORDS = {"true": True, "yes": True, "false": False, "no": False}
_TEXT_SHOWN = 60  # characters of a text fact a verdict shows


class ExpectSyntaxError(ValueError):
    """An --expect that does not parse. ``str()`` is one line: the input, the problem and
    the accepted form, ready for a usage error."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(text, problem)  # both in args, so it pickles
        self.text, self.problem = text, problem

    def __str__(self) -> str:
        shown = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        return f"{shown!r}: {self.problem}"


class Verdict(NamedTuple):
    """One check's outcome: the check (canonical form), whether it held, what was found."""

    expectation: str
    passed: bool
    found: str


Value = int | float | str | bool


class Expectation:
    """One parsed check. Immutable; equal when name, operator and normalised value are
    (``text``, what the user typed, is kept for messages only). Build it with :func:`parse`.

    Flags are always ``op == "="`` with a bool value (``!verified`` and ``verified!=yes``
    are one check); ``==`` becomes ``=``.
    """

    __slots__ = ("_regex", "fact", "name", "op", "text", "value")
    text: str
    name: str
    op: str
    value: Value
    fact: Fact
    _regex: re.Pattern[str] | None

    def __init__(self, text: str, fact: Fact, op: str, value: Value,
                 regex: re.Pattern[str] | None = None) -> None:
        for slot, item in (("text", text), ("fact", fact), ("name", fact.name), ("op", op),
                           ("value", value), ("_regex", regex)):
            object.__setattr__(self, slot, item)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Expectation is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Expectation is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expectation):
            return NotImplemented
        return (self.name, self.op, self.value) == (other.name, other.op, other.value)

    def __hash__(self) -> int:
        return hash((self.name, self.op, self.value))

    def __repr__(self) -> str:
        return f"Expectation({str(self)!r})"

    def __str__(self) -> str:
        kind, value = self.fact.kind, self.value
        if kind == FLAG:
            return self.name if value else "!" + self.name
        if kind == TEXT:
            assert isinstance(value, str)
            return f"{self.name}{self.op}{_text_literal(value)}"
        if kind == VERSION:
            return f"{self.name}{self.op}{value}"
        assert isinstance(value, int | float)
        unit = {DURATION: "ms", PERCENT: "%"}.get(kind, "")
        return f"{self.name}{self.op}{_number_literal(value)}{unit}"

    def check(self, facts: Mapping[str, object]) -> Verdict:
        """Compare against a run's facts (name -> value; a missing or None value, or a NaN,
        fails as "not measured"). A value of the wrong type is a caller's bug: TypeError."""
        shown, kind, have = str(self), self.fact.kind, facts.get(self.name)
        if have is None or (isinstance(have, float) and have != have):
            return Verdict(shown, False, NOT_MEASURED)
        if kind == FLAG:
            if not isinstance(have, bool):
                raise _wrong_type(self.name, "a bool", have)
            return Verdict(shown, have is self.value, "yes" if have else "no")
        if kind == TEXT:
            if not isinstance(have, str):
                raise _wrong_type(self.name, "a str", have)
            if self.op in ("~", "!~"):
                passed = (self._pattern().search(have) is not None) == (self.op == "~")
            else:
                passed = (have == self.value) == (self.op == "=")
            return Verdict(shown, passed, _show_text(have))
        if kind == VERSION:
            if not isinstance(have, str):
                raise _wrong_type(self.name, 'a str such as "TLSv1.3"', have)
            key = _VERSION_ORDER.get(have)
            passed = key is not None and _compare(key, self.op, _VERSION_ORDER[str(self.value)])
            return Verdict(shown, passed, have)
        if isinstance(have, bool) or not isinstance(have, int | float):
            raise _wrong_type(self.name, "an int or float", have)
        return Verdict(shown, _compare(have, self.op, self.value),
                       _show_number(have, kind, self.fact.unit))

    def _pattern(self) -> re.Pattern[str]:
        if self._regex is not None:
            return self._regex
        import re  # an Expectation built without parse(): compile once, on first use

        pattern = re.compile(str(self.value))
        object.__setattr__(self, "_regex", pattern)
        return pattern


def looks_like_check(text: str) -> bool:
    """Whether ``text`` reads as a check at all (a known name, or an alias, then an
    operator or nothing), right or wrong: what lets bench tell a check with a mistake from
    the reply text its ``--expect`` took before this language."""
    import re

    found = re.match(r"\s*!?\s*([A-Za-z][A-Za-z0-9.-]*)\s*([<>=!~]|$)", text)
    if found is None:
        return False
    name = found[1].lower()
    return name in _BY_NAME or name in ALIASES


def facts_for(command: str) -> dict[str, Fact]:
    """The facts ``command`` measures, by canonical name (a fresh dict each call)."""
    if command not in COMMANDS:
        raise ValueError(f"no --expect facts for command {command!r}; "
                         f"known: {', '.join(sorted(COMMANDS))}")
    return {fact.name: fact for fact in FACTS if command in fact.commands}


def check_all(expectations: Iterable[Expectation],
              facts: Mapping[str, object]) -> list[Verdict]:
    """Every check's verdict, in order; the caller ANDs them (all(v.passed for v in ...))."""
    return [expectation.check(facts) for expectation in expectations]


def describe(names: Iterable[str]) -> str:
    """One aligned line per fact (name, kind, meaning, aliases) for --help, docs and man.
    Aliases are resolved and repeats dropped; an unknown name is a ValueError (a stale doc
    should fail, not shrink)."""
    facts: list[Fact] = []
    for name in names:
        fact = _BY_NAME.get(ALIASES.get(name, name))
        if fact is None:
            raise ValueError(f"describe(): unknown fact {name!r}")
        if fact not in facts:
            facts.append(fact)
    if not facts:
        return ""
    rows = [(fact.name, _kind_label(fact), fact.meaning + _alias_note(fact.name))
            for fact in facts]
    name_width = max(len(row[0]) for row in rows)
    kind_width = max(len(row[1]) for row in rows)
    return "\n".join(f"{name:<{name_width}}  {kind:<{kind_width}}  {meaning}"
                     for name, kind, meaning in rows)


def parse(text: str, command: str) -> Expectation:
    """Parse one --expect for ``command``; ExpectSyntaxError names what is wrong."""
    known = facts_for(command)
    source = text.strip()
    if not source:
        raise ExpectSyntaxError(text, f"empty check; {_FORMS}")
    negated = source.startswith("!")
    start = _skip_space(source, 1 if negated else 0)
    end = _name_end(source, start)
    if end == start or (end < len(source) and not source[end].isspace()
                        and source[end] not in _OP_START):
        token = _token(source, start)
        if not token:
            raise ExpectSyntaxError(text, f"missing name; {_FORMS}")
        raise ExpectSyntaxError(text, f"{token!r} is not a name (letters, digits, '-' and "
                                      f"'.', e.g. cert.days); {_FORMS}")
    written = source[start:end].lower()
    fact = _lookup(text, written, command, known)
    at = _skip_space(source, end)
    if at == len(source):
        return _bare(text, fact, negated)
    op = next((op for op in _OPS if source.startswith(op, at)), None)
    if op is None:
        raise ExpectSyntaxError(text, f"expected an operator (= != < <= > >= ~ !~) after "
                                      f"{written}, found {source[at:]!r}; {_FORMS}")
    if negated:
        raise ExpectSyntaxError(text, f"'!' goes only before a yes/no name alone, e.g. "
                                      f"!chain.complete; drop it to compare {written}")
    raw = source[at + len(op):].lstrip()
    op = "=" if op == "==" else op
    if fact.kind == FLAG:
        return _flag(text, fact, op, raw)
    if fact.kind == TEXT:
        return _text(text, fact, op, raw)
    if op not in _ORDER_OPS:
        raise ExpectSyntaxError(text, f"{op!r} (regex search) is for text; "
                                      f"{_takes(fact)}")
    if not raw:
        raise ExpectSyntaxError(text, f"missing value; {_takes(fact)}")
    value = _version(raw) if fact.kind == VERSION else _number(text, fact, raw)
    if value is None:
        raise ExpectSyntaxError(text, _takes(fact))
    return Expectation(text, fact, op, value)


# -- parsing helpers ---------------------------------------------------------------------

def _skip_space(source: str, at: int) -> int:
    while at < len(source) and source[at].isspace():
        at += 1
    return at


def _name_end(source: str, at: int) -> int:
    """End of NAME := [a-z][a-z0-9-]*(\\.[a-z0-9-]+)* at ``at`` (== at when none)."""
    if at >= len(source) or source[at] not in _LETTERS:
        return at
    end, size = at + 1, len(source)
    while True:
        while end < size and source[end] in _NAME_CHARS:
            end += 1
        if end + 1 < size and source[end] == "." and source[end + 1] in _NAME_CHARS:
            end += 1
            continue
        return end


def _token(source: str, at: int) -> str:
    """The word at ``at``, up to whitespace or an operator: what a bad name shows."""
    end = at
    while end < len(source) and not source[end].isspace() and source[end] not in _OP_START:
        end += 1
    return source[at:end]


def _lookup(text: str, written: str, command: str, known: Mapping[str, Fact]) -> Fact:
    name = ALIASES.get(written, written)
    if name in known:
        return known[name]
    listed = f"this command knows: {', '.join(sorted(known))}"
    other = _BY_NAME.get(name)
    if other is not None:
        by = ", ".join(sorted(other.commands))
        raise ExpectSyntaxError(text, f"{command} does not measure {name} "
                                      f"(only {by}); {listed}")
    import difflib  # only on this error path

    close = difflib.get_close_matches(written, [*known, *(a for a, target in ALIASES.items()
                                                          if target in known)], n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ExpectSyntaxError(text, f"unknown name {written!r}{hint}; {listed}")


def _bare(text: str, fact: Fact, negated: bool) -> Expectation:
    if fact.kind != FLAG:
        raise ExpectSyntaxError(text, f"{fact.name} needs a comparison; {_takes(fact)}")
    return Expectation(text, fact, "=", not negated)


def _flag(text: str, fact: Fact, op: str, raw: str) -> Expectation:
    word = _FLAG_WORDS.get(raw.lower()) if op in ("=", "!=") else None
    if word is None:
        raise ExpectSyntaxError(text, _takes(fact))
    return Expectation(text, fact, "=", word if op == "=" else not word)


def _text(text: str, fact: Fact, op: str, raw: str) -> Expectation:
    if op not in _TEXT_OPS:
        raise ExpectSyntaxError(text, f"{fact.name} is text: {op!r} does not apply; "
                                      f"{_takes(fact)}")
    if raw[:1] in _QUOTES:
        value = _unquote(text, raw)
    elif not raw:
        raise ExpectSyntaxError(text, f'missing value (write "" for empty text); '
                                      f"{_takes(fact)}")
    elif any(char.isspace() for char in raw):
        raise ExpectSyntaxError(text, f'text with spaces must be quoted, e.g. '
                                      f'{fact.name}{op}"SSH 2"')
    else:
        value = raw
    if op not in ("~", "!~"):
        return Expectation(text, fact, op, value)
    import re  # only a ~ check pays for the regex compiler
    import warnings

    try:
        with warnings.catch_warnings():  # "possible nested set" and the like: not for users
            warnings.simplefilter("ignore")
            regex = re.compile(value)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        problem = str(exc).replace("\n", " ")
        raise ExpectSyntaxError(text, f"bad regex {value!r}: {problem}") from None
    return Expectation(text, fact, op, value, regex)


def _unquote(text: str, raw: str) -> str:
    r"""A quoted value: \" \' \\ are escapes; any other backslash stays, so a regex's \d
    needs no doubling."""
    quote, chars, at = raw[0], [], 1
    while at < len(raw):
        char = raw[at]
        if char == "\\" and at + 1 < len(raw):
            follower = raw[at + 1]
            chars.append(follower if follower in ("\\", "'", '"') else char + follower)
            at += 2
            continue
        if char == quote:
            rest = raw[at + 1:].strip()
            if rest:
                raise ExpectSyntaxError(text, f"unexpected {rest!r} after the closing "
                                              f"{quote}; quote the whole value")
            return "".join(chars)
        chars.append(char)
        at += 1
    raise ExpectSyntaxError(text, f"missing closing {quote}")


def _version(raw: str) -> str | None:
    """'1.2', 'TLSv1.2', 'tls1.2', 'TLSv1' (OpenSSL's 1.0), 'SSLv3' -> OpenSSL's spelling."""
    word = raw.lower()
    if word in ("sslv3", "ssl3"):
        return "SSLv3"
    for prefix in ("tlsv", "tls"):
        if word.startswith(prefix):
            word = word[len(prefix):]
            if word == "1":
                word = "1.0"
            break
    return "TLSv" + word if word in ("1.0", "1.1", "1.2", "1.3") else None


def _number(text: str, fact: Fact, raw: str) -> int | float | None:
    """A DURATION (in ms), PERCENT or NUMBER value; None when it is not a number at all."""
    split = _split_number(raw)
    if split is None:
        return None
    digits, unit = split
    unit = unit.lower()
    shift = 0
    if fact.kind == DURATION:
        if unit not in _DURATION_SHIFT:
            raise ExpectSyntaxError(text, f"unknown unit {unit!r}; {_takes(fact)}")
        shift = _DURATION_SHIFT[unit]
    elif unit and not ((fact.kind == PERCENT and unit == "%")
                       or (fact.unit == "days" and unit in _DAY_UNITS)):
        raise ExpectSyntaxError(text, f"unknown unit {unit!r}; {_takes(fact)}")
    if digits.startswith("-") and fact.kind != NUMBER:
        raise ExpectSyntaxError(text, f"cannot be negative; {_takes(fact)}")
    value = _scaled(digits, shift)
    if value is None:
        shown = digits if len(digits) <= 20 else digits[:17] + "..."
        raise ExpectSyntaxError(text, f"{shown!r} is out of range; {_takes(fact)}")
    if fact.kind == PERCENT and value > 100:
        raise ExpectSyntaxError(text, f"a percentage is at most 100; {_takes(fact)}")
    return value


def _split_number(raw: str) -> tuple[str, str] | None:
    """'1.5 ms' -> ('1.5', 'ms'): -?D+(.D+)?(e[+-]?D+)? then the rest as the unit. (The
    exponent is accepted because repr() writes tiny and huge floats that way.)"""
    at, size = (1 if raw.startswith("-") else 0), len(raw)
    first = at
    while at < size and raw[at] in _DIGITS:
        at += 1
    if at == first:
        return None
    if at < size and raw[at] == ".":
        fraction = at + 1
        while fraction < size and raw[fraction] in _DIGITS:
            fraction += 1
        if fraction == at + 1:
            return None
        at = fraction
    if at < size and raw[at] in "eE":
        exponent = at + 1
        if exponent < size and raw[exponent] in "+-":
            exponent += 1
        power = exponent
        while power < size and raw[power] in _DIGITS:
            power += 1
        if power > exponent:
            at = power
    return raw[:at], raw[at:].strip()


def _scaled(digits: str, shift: int) -> int | float | None:
    """``digits`` × 10**shift, exact for integers and correctly rounded for the rest (the
    shift goes into the exponent, so 1.1s is 1100 ms, not 1100.0000000000002). Integral
    results become int, so 1.5s and 1500 are the same check. None when out of range."""
    try:
        if "." not in digits and "e" not in digits.lower():
            whole, scale = int(digits), int(10 ** abs(shift))
            if shift >= 0:
                return whole * scale
            quotient, remainder = divmod(whole, scale)
            if not remainder:
                return quotient
        mantissa, _, exponent = digits.lower().partition("e")
        value = float(f"{mantissa}e{int(exponent or '0') + shift}")
    except (ValueError, OverflowError):  # beyond int()'s digit limit
        return None
    if value in (float("inf"), float("-inf")):
        return None
    if value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    return value


# -- formatting and checking -------------------------------------------------------------

def _takes(fact: Fact) -> str:
    """What ``fact`` accepts, for error messages: one phrase and an example."""
    name, kind = fact.name, fact.kind
    if kind == FLAG:
        return f"{name} is yes/no: write {name}, !{name} or {name}=true|false"
    if kind == TEXT:
        return (f"{name} takes text with = or != (exact) or ~ or !~ (regex search), "
                f"e.g. {fact.example}")
    takes = {
        DURATION: "a duration (us, ms or s; no unit means ms)",
        PERCENT: "a percentage from 0 to 100",
        VERSION: "a TLS version (1.0 to 1.3, TLSv1.2, tls1.3 or SSLv3)",
        NUMBER: f"a number of {fact.unit}" if fact.unit else "a number",
    }[kind]
    return f"{name} takes {takes}, e.g. {fact.example}"


def _kind_label(fact: Fact) -> str:
    if fact.kind == NUMBER and fact.unit:
        return fact.unit
    return {FLAG: "yes/no", VERSION: "TLS version"}.get(fact.kind, fact.kind)


def _alias_note(name: str) -> str:
    aliases = sorted(alias for alias, target in ALIASES.items() if target == name)
    return f" (also: {', '.join(aliases)})" if aliases else ""


def _number_literal(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(value)  # repr round-trips floats


def _text_literal(value: str) -> str:
    """A TEXT value as it parses back: bare when it is a plain word, else double-quoted."""
    if value and value[0] not in _OP_START and value[0] not in _QUOTES and not any(
            char.isspace() for char in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _compare(have: Any, op: str, want: Any) -> bool:
    if op == "=":
        return bool(have == want)
    if op == "!=":
        return bool(have != want)
    if op == "<":
        return bool(have < want)
    if op == "<=":
        return bool(have <= want)
    if op == ">":
        return bool(have > want)
    if op == ">=":
        return bool(have >= want)
    raise AssertionError(f"unexpected operator {op!r}")


def _show_number(value: int | float, kind: Kind, unit: str) -> str:
    shown = str(value) if isinstance(value, int) else (
        f"{value:.1f}" if abs(value) >= 1 else f"{value:.3f}")
    if kind == DURATION:
        return f"{shown} ms"
    if kind == PERCENT:
        return f"{shown} %"
    if unit:
        return f"{shown} {unit[:-1] if value == 1 and unit.endswith('s') else unit}"
    return shown


def _show_text(value: str) -> str:
    if len(value) <= _TEXT_SHOWN:
        return repr(value)
    return repr(value[:_TEXT_SHOWN]) + "..."


def _wrong_type(name: str, wanted: str, have: object) -> TypeError:
    return TypeError(f"--expect fact {name!r} must be {wanted}, "
                     f"not {type(have).__name__} {have!r}")
