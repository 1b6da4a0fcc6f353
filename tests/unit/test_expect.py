"""--expect: the check language every command shares (tcpcli/core/expect.py).

Pure functions: parsing, canonical forms, checks against a run's facts and the messages a
user sees for a mistake. The fuzz tests pin the parser's contract: any text gives an
Expectation or an ExpectSyntaxError (one line), and a canonical form parses back equal.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tcpcli.core.expect import (
    ALIASES,
    COMMANDS,
    FACTS,
    GRAMMAR,
    NOT_MEASURED,
    Expectation,
    ExpectSyntaxError,
    Fact,
    Verdict,
    check_all,
    describe,
    facts_for,
    parse,
)

FUZZ = settings(max_examples=150, deadline=2000, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def error_of(text: str, command: str) -> str:
    with pytest.raises(ExpectSyntaxError) as info:
        parse(text, command)
    return str(info.value)


# -- the catalogue -----------------------------------------------------------------------

#: What the docs promise: name -> (kind, commands that measure it).
CATALOGUE = {
    "connect.ms": ("duration", "connect starttls ping probe"),
    "resolve.ms": ("duration", "connect starttls ping"),
    "tls.ms": ("duration", "connect starttls ping"),
    "total.ms": ("duration", "connect starttls"),
    "rtt.ms": ("duration", "connect ping"),
    "tls.version": ("version", "connect starttls ping"),
    "tls.cipher": ("text", "connect starttls"),
    "alpn": ("text", "connect starttls"),
    "verified": ("flag", "connect starttls ping"),
    "cert.days": ("number", "connect starttls ping"),
    "chain.days": ("number", "connect starttls"),
    "chain.complete": ("flag", "connect starttls"),
    "banner": ("text", "connect probe"),
    "starttls": ("flag", "starttls"),
    "open": ("flag", "probe"),
    "closed": ("flag", "probe"),
    "ports.open": ("number", "probe"),
    "ports.closed": ("number", "probe"),
    "ports.filtered": ("number", "probe"),
    "sent": ("number", "ping"),
    "ok": ("number", "ping"),
    "failed": ("number", "ping"),
    "loss": ("percent", "ping bench"),
    "min": ("duration", "ping bench"),
    "avg": ("duration", "ping bench"),
    "max": ("duration", "ping bench"),
    "mdev": ("duration", "ping"),
    "p50": ("duration", "ping bench"),
    "p90": ("duration", "ping bench"),
    "p99": ("duration", "ping bench"),
    "p999": ("duration", "bench"),
    "errors": ("number", "bench"),
    "rate": ("number", "bench"),
}


def test_catalogue_is_what_the_docs_promise() -> None:
    assert {f.name: (f.kind, " ".join(sorted(f.commands))) for f in FACTS} == {
        name: (kind, " ".join(sorted(commands.split())))
        for name, (kind, commands) in CATALOGUE.items()}
    assert len({f.name for f in FACTS}) == len(FACTS)
    assert ALIASES == {"tls": "tls.version", "days-left": "cert.days"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_facts_for_a_command(command: str) -> None:
    facts = facts_for(command)
    assert facts == {name: f for f in FACTS for name in [f.name] if command in f.commands}
    assert all(isinstance(f, Fact) for f in facts.values())
    facts.clear()  # a fresh dict: the caller may change it
    assert facts_for(command)


def test_facts_for_is_command_specific() -> None:
    assert "mdev" in facts_for("ping") and "mdev" not in facts_for("bench")
    assert "p999" in facts_for("bench") and "p999" not in facts_for("ping")
    assert set(facts_for("probe")) == {"connect.ms", "banner", "open", "closed", "ports.open",
                                       "ports.closed", "ports.filtered"}


def test_facts_for_an_unknown_command_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no --expect facts for command 'listen'") as info:
        facts_for("listen")
    assert not isinstance(info.value, ExpectSyntaxError)


@pytest.mark.parametrize("fact", FACTS, ids=lambda f: f.name)
def test_every_example_parses_for_every_command_of_its_fact(fact: Fact) -> None:
    for command in fact.commands:
        parsed = parse(fact.example, command)
        assert parsed.name == fact.name
        assert parse(str(parsed), command) == parsed


# -- parsing: every kind, operator and unit ----------------------------------------------

@pytest.mark.parametrize(("text", "command", "name", "op", "value", "canonical"), [
    # DURATION: milliseconds; us, µs, ms, s; no unit means ms
    ("connect.ms<200", "connect", "connect.ms", "<", 200, "connect.ms<200ms"),
    ("p99<50ms", "bench", "p99", "<", 50, "p99<50ms"),
    ("p99 < 50 ms", "bench", "p99", "<", 50, "p99<50ms"),
    ("p99<=1.5s", "ping", "p99", "<=", 1500, "p99<=1500ms"),
    ("p99<1.005s", "ping", "p99", "<", 1005, "p99<1005ms"),  # not 1004.9999999999999
    ("avg>0.25", "ping", "avg", ">", 0.25, "avg>0.25ms"),
    ("min>=800us", "bench", "min", ">=", 0.8, "min>=0.8ms"),
    ("min>=800µs", "bench", "min", ">=", 0.8, "min>=0.8ms"),    # micro sign
    ("min>=800μs", "bench", "min", ">=", 0.8, "min>=0.8ms"),    # Greek mu
    ("max!=2000US", "ping", "max", "!=", 2, "max!=2ms"),
    ("tls.ms==3S", "connect", "tls.ms", "=", 3000, "tls.ms=3000ms"),
    ("rtt.ms=0", "ping", "rtt.ms", "=", 0, "rtt.ms=0ms"),
    ("mdev<1e-2", "ping", "mdev", "<", 0.01, "mdev<0.01ms"),
    # PERCENT: points, 0..100
    ("loss<=1%", "ping", "loss", "<=", 1, "loss<=1%"),
    ("loss<=1", "bench", "loss", "<=", 1, "loss<=1%"),
    ("loss < 0.5 %", "ping", "loss", "<", 0.5, "loss<0.5%"),
    ("loss=100%", "ping", "loss", "=", 100, "loss=100%"),
    # NUMBER, days where the fact counts them
    ("cert.days>=30", "connect", "cert.days", ">=", 30, "cert.days>=30"),
    ("cert.days>=30d", "starttls", "cert.days", ">=", 30, "cert.days>=30"),
    ("cert.days > 1 day", "ping", "cert.days", ">", 1, "cert.days>1"),
    ("chain.days>=14days", "connect", "chain.days", ">=", 14, "chain.days>=14"),
    ("cert.days>-1", "connect", "cert.days", ">", -1, "cert.days>-1"),  # expired: negative
    ("ports.open>=1", "probe", "ports.open", ">=", 1, "ports.open>=1"),
    ("errors=0", "bench", "errors", "=", 0, "errors=0"),
    ("rate>=1234.5", "bench", "rate", ">=", 1234.5, "rate>=1234.5"),
    ("failed<=2", "ping", "failed", "<=", 2, "failed<=2"),
    # VERSION: OpenSSL's spelling
    ("tls.version>=1.2", "connect", "tls.version", ">=", "TLSv1.2", "tls.version>=TLSv1.2"),
    ("tls.version>=TLSv1.3", "ping", "tls.version", ">=", "TLSv1.3", "tls.version>=TLSv1.3"),
    ("tls.version=tls1.1", "ping", "tls.version", "=", "TLSv1.1", "tls.version=TLSv1.1"),
    ("tls.version>1.0", "ping", "tls.version", ">", "TLSv1.0", "tls.version>TLSv1.0"),
    ("tls.version!=TLSv1", "ping", "tls.version", "!=", "TLSv1.0", "tls.version!=TLSv1.0"),
    ("tls.version>SSLv3", "ping", "tls.version", ">", "SSLv3", "tls.version>SSLv3"),
    ("tls.version<=ssl3", "ping", "tls.version", "<=", "SSLv3", "tls.version<=SSLv3"),
    # TEXT: exact or regex search; bare word or quoted
    ("alpn=h2", "connect", "alpn", "=", "h2", "alpn=h2"),
    ("alpn != http/1.1", "starttls", "alpn", "!=", "http/1.1", "alpn!=http/1.1"),
    ('banner~"^SSH-2.0"', "probe", "banner", "~", "^SSH-2.0", "banner~^SSH-2.0"),
    ("banner~'^SSH-2\\.0'", "probe", "banner", "~", "^SSH-2\\.0", "banner~^SSH-2\\.0"),
    ("banner!~OpenSSH_[0-6]", "connect", "banner", "!~", "OpenSSH_[0-6]",
     "banner!~OpenSSH_[0-6]"),
    ('banner="220 mail ESMTP"', "connect", "banner", "=", "220 mail ESMTP",
     'banner="220 mail ESMTP"'),
    ('banner="say \\"hi\\" \\\\o/"', "connect", "banner", "=", 'say "hi" \\o/',
     'banner="say \\"hi\\" \\\\o/"'),
    ("banner='it\\'s'", "connect", "banner", "=", "it's", "banner=it's"),
    ('banner="it\'s"', "connect", "banner", "=", "it's", "banner=it's"),  # other quote: plain
    ("banner='say \"hi\"'", "connect", "banner", "=", 'say "hi"', 'banner="say \\"hi\\""'),
    ('alpn=""', "connect", "alpn", "=", "", 'alpn=""'),
    ('banner="=x"', "connect", "banner", "=", "=x", 'banner="=x"'),  # quoted: else it is ==
    ("tls.cipher~GCM", "connect", "tls.cipher", "~", "GCM", "tls.cipher~GCM"),
    ("Banner=SSH", "probe", "banner", "=", "SSH", "banner=SSH"),  # value keeps its case
    # FLAG: always "=" with a bool
    ("verified", "connect", "verified", "=", True, "verified"),
    ("!chain.complete", "connect", "chain.complete", "=", False, "!chain.complete"),
    ("! chain.complete", "connect", "chain.complete", "=", False, "!chain.complete"),
    ("verified=true", "ping", "verified", "=", True, "verified"),
    ("verified == YES", "ping", "verified", "=", True, "verified"),
    ("verified=no", "ping", "verified", "=", False, "!verified"),
    ("verified!=false", "ping", "verified", "=", True, "verified"),
    ("verified!=yes", "ping", "verified", "=", False, "!verified"),
    ("starttls", "starttls", "starttls", "=", True, "starttls"),
    ("  VERIFIED  ", "connect", "verified", "=", True, "verified"),
])
def test_parse(text: str, command: str, name: str, op: str, value: object,
               canonical: str) -> None:
    parsed = parse(text, command)
    assert (parsed.text, parsed.name, parsed.op, parsed.value) == (text, name, op, value)
    assert type(parsed.value) is type(value)  # 1.5s is the int 1500: one check, one form
    assert parsed.fact.name == name
    assert str(parsed) == canonical
    assert parse(canonical, command) == parsed


@pytest.mark.parametrize(("legacy", "canonical"), [
    ("verified", "verified"),
    ("tls>=1.2", "tls.version>=TLSv1.2"),
    ("tls >= 1.3", "tls.version>=TLSv1.3"),
    ("days-left>=21", "cert.days>=21"),
    ("DAYS-LEFT >= 7", "cert.days>=7"),
])
def test_legacy_starttls_forms(legacy: str, canonical: str) -> None:
    assert str(parse(legacy, "starttls")) == canonical
    assert parse(legacy, "starttls") == parse(canonical, "starttls")


def test_legacy_forms_check_as_starttls_did() -> None:
    facts = {"verified": True, "tls.version": "TLSv1.2", "cert.days": 21}
    verdicts = check_all([parse(t, "starttls") for t in
                          ("verified", "tls>=1.2", "days-left>=21", "tls>=1.3",
                           "days-left>=22")], facts)
    assert [v.passed for v in verdicts] == [True, True, True, False, False]
    assert verdicts[4] == Verdict("cert.days>=22", False, "21 days")


def test_aliases_work_for_every_command_that_measures_the_target() -> None:
    assert parse("tls>=1.2", "ping").name == "tls.version"
    assert parse("days-left>=1", "connect").name == "cert.days"


# -- Expectation: equality, immutability -------------------------------------------------

def test_equality_ignores_what_the_user_typed() -> None:
    a, b = parse("tls >= 1.2", "connect"), parse("tls.version>=TLSv1.2", "connect")
    assert a == b and hash(a) == hash(b) and a.text != b.text
    assert len({a, b, parse("p99<1s", "bench"), parse("p99<1000", "bench")}) == 2
    assert a != parse("tls.version>1.2", "connect")
    assert a != parse("tls.version>=1.3", "connect")
    assert parse("alpn=h2", "connect") != parse("alpn~h2", "connect")
    assert a != "tls.version>=TLSv1.2"
    assert repr(a) == "Expectation('tls.version>=TLSv1.2')"


def test_expectation_is_immutable() -> None:
    parsed = parse("p99<50ms", "bench")
    with pytest.raises(AttributeError):
        parsed.value = 1
    with pytest.raises(AttributeError):
        del parsed.op
    assert parsed.value == 50


# -- errors: one line naming the problem and the accepted form ---------------------------

@pytest.mark.parametrize(("text", "command", "message"), [
    ("cert.days>=soon", "connect",
     "'cert.days>=soon': cert.days takes a number of days, e.g. cert.days>=30"),
    ("foo>1", "probe",
     "'foo>1': unknown name 'foo'; this command knows: banner, closed, connect.ms, "
     "open, ports.closed, ports.filtered, ports.open"),
    ("cert.day>=3", "starttls",
     "'cert.day>=3': unknown name 'cert.day' (did you mean cert.days?); this command "
     "knows: alpn, cert.days, chain.complete, chain.days, connect.ms, resolve.ms, starttls, "
     "tls.cipher, tls.ms, tls.version, total.ms, verified"),
    ("banner~SSH", "bench",
     "'banner~SSH': bench does not measure banner (only connect, probe); this command "
     "knows: avg, errors, loss, max, min, p50, p90, p99, p999, rate"),
    ("", "ping", "'': empty check; write NAME OP VALUE, NAME or !NAME, e.g. cert.days>=30"),
    ("p99", "bench",
     "'p99': p99 needs a comparison; p99 takes a duration (us, ms or s; no unit means ms), "
     "e.g. p99<50ms"),
    ("verified>1", "ping",
     "'verified>1': verified is yes/no: write verified, !verified or verified=true|false"),
    ('banner~"("', "probe",
     "'banner~\"(\"': bad regex '(': missing ), unterminated subpattern at position 0"),
    ("tls>=1.4", "starttls",
     "'tls>=1.4': tls.version takes a TLS version (1.0 to 1.3, TLSv1.2, tls1.3 or SSLv3), "
     "e.g. tls.version>=1.2"),
    ("loss<=101", "ping",
     "'loss<=101': a percentage is at most 100; loss takes a percentage from 0 to 100, "
     "e.g. loss<=1%"),
])
def test_exact_error_messages(text: str, command: str, message: str) -> None:
    assert error_of(text, command) == message


@pytest.mark.parametrize(("text", "command", "says"), [
    ("   ", "ping", "empty check"),
    ("!", "connect", "missing name"),
    (">=5", "ping", "missing name"),
    ("!!verified", "connect", "missing name"),
    ("1>2", "ping", "'1' is not a name"),
    ("cert.days_x>=1", "ping", "'cert.days_x' is not a name"),
    ("cert.>=1", "ping", "'cert.' is not a name"),
    ("connect.ms.>1", "ping", "'connect.ms.' is not a name"),
    ("alpn h2", "connect", "expected an operator (= != < <= > >= ~ !~) after alpn, found 'h2'"),
    ("p99 =< 5", "ping", "p99 takes a duration"),  # "=" then "<5"
    ("!p99<3", "ping", "'!' goes only before a yes/no name alone"),
    ("!verified=true", "ping", "'!' goes only before a yes/no name alone"),
    ("!p99", "ping", "p99 needs a comparison"),
    ("!nope", "ping", "unknown name 'nope'"),
    ("tls", "starttls", "tls.version needs a comparison"),
    ("connect>1", "connect", "unknown name 'connect'"),  # no alias for it
    ("starttls", "connect", "connect does not measure starttls (only starttls)"),
    # duration
    ("p99<fast", "ping", "p99 takes a duration (us, ms or s; no unit means ms)"),
    ("p99<5m", "ping", "unknown unit 'm'"),
    ("p99<5 ns", "ping", "unknown unit 'ns'"),
    ("p99<5%", "ping", "unknown unit '%'"),
    ("p99<-1", "ping", "cannot be negative"),
    ("p99<-0", "ping", "cannot be negative"),
    ("p99<", "ping", "missing value; p99 takes a duration"),
    ("p99<5.", "ping", "p99 takes a duration"),
    ("p99<.5", "ping", "p99 takes a duration"),
    ("p99<inf", "ping", "p99 takes a duration"),
    ("p99<nan", "ping", "p99 takes a duration"),
    ("p99<1_000", "ping", "unknown unit '_000'"),
    ("p99<1e999", "ping", "'1e999' is out of range"),
    ("p99<1e308s", "ping", "'1e308' is out of range"),
    ('p99<"5"', "ping", "p99 takes a duration"),
    ("p99~5", "ping", "'~' (regex search) is for text; p99 takes a duration"),
    ("p99!~5", "ping", "'!~' (regex search) is for text"),
    ("p99<٥", "ping", "p99 takes a duration"),  # Arabic-Indic five: digits are ASCII
    # percent
    ("loss<=-1%", "ping", "cannot be negative; loss takes a percentage from 0 to 100"),
    ("loss<=1 percent", "ping", "unknown unit 'percent'"),
    ("loss<=1ms", "bench", "unknown unit 'ms'"),
    # number
    ("ports.open>=1d", "probe", "unknown unit 'd'; ports.open takes a number, e.g. ports.open>=1"),
    ("cert.days>=30 weeks", "connect", "unknown unit 'weeks'; cert.days takes a number of days"),
    ("rate>=fast", "bench", "rate takes a number, e.g. rate>=1000"),
    ("errors~0", "bench", "'~' (regex search) is for text"),
    ("cert.days>=" + "9" * 5000, "connect", "'99999999999999999...' is out of range"),  # beyond int()'s digit limit
    # version
    ("tls.version>=1", "connect", "tls.version takes a TLS version"),
    ("tls.version>=2.0", "connect", "tls.version takes a TLS version"),
    ("tls.version>=TLSv1.2x", "connect", "tls.version takes a TLS version"),
    ("tls.version>=SSLv2", "connect", "tls.version takes a TLS version"),
    ("tls.version~1.2", "connect", "'~' (regex search) is for text"),
    # text
    ("banner>SSH", "probe", "banner is text: '>' does not apply; banner takes text with = "
                            "or != (exact) or ~ or !~ (regex search), e.g. banner~\"^SSH-2.0\""),
    ("alpn<=h2", "connect", "alpn is text: '<=' does not apply"),
    ("banner=SSH 2", "probe", 'text with spaces must be quoted, e.g. banner="SSH 2"'),
    ("banner=", "probe", 'missing value (write "" for empty text)'),
    ('banner="SSH', "probe", 'missing closing "'),
    ("banner='SSH", "probe", "missing closing '"),
    ('banner="SSH\\"', "probe", 'missing closing "'),  # the quote is escaped
    ('banner="a"b', "probe", "unexpected 'b' after the closing \"; quote the whole value"),
    ("banner~[", "probe", "bad regex '[': unterminated character set at position 0"),
    ("banner~a{99999999999}", "probe", "bad regex 'a{99999999999}': "),
    ("banner~(?L)a", "probe", "bad regex '(?L)a': "),
    # flag
    ("verified=maybe", "connect", "verified is yes/no: write verified, !verified or "
                                  "verified=true|false"),
    ("verified=", "connect", "verified is yes/no"),
    ("verified~yes", "connect", "verified is yes/no"),
    ("verified=1", "connect", "verified is yes/no"),
])
def test_error_messages(text: str, command: str, says: str) -> None:
    message = error_of(text, command)
    assert says in message
    assert "\n" not in message
    shown = repr(text) if len(text) <= 80 else repr(text[:77] + "...")
    assert message.startswith(shown + ": ")


def test_error_message_stays_one_line_for_control_characters() -> None:
    message = error_of("banner=a\nb", "connect")
    assert message.startswith("'banner=a\\nb': ") and "\n" not in message


def test_syntax_error_is_a_value_error_that_pickles() -> None:
    with pytest.raises(ValueError, match="unknown name") as info:
        parse("foo", "ping")
    error = info.value
    assert isinstance(error, ExpectSyntaxError)
    assert (error.text, error.problem.split(";")[0]) == ("foo", "unknown name 'foo'")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ExpectSyntaxError) and str(copy) == str(error)


def test_a_regex_warning_is_not_shown_to_the_user() -> None:
    re.purge()  # the warning comes with the first compile of a pattern
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parsed = parse("banner~[[:alpha:]]", "probe")  # POSIX class: "possible nested set"
    assert caught == []
    assert parsed.check({"banner": "x:]"}).passed  # Python reads it as [[:alph] then ]


def test_regex_is_compiled_at_parse_time() -> None:
    parsed = parse("banner~^SSH", "probe")
    assert parsed._regex is not None and parsed._regex.pattern == "^SSH"
    assert parse("banner=^SSH", "probe")._regex is None  # = is not a regex


# -- check -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "command", "have", "passed", "found"), [
    ("connect.ms<200", "connect", 62.3, True, "62.3 ms"),
    ("connect.ms<200", "connect", 200, False, "200 ms"),
    ("connect.ms<=200", "connect", 200, True, "200 ms"),
    ("p99<50ms", "bench", 0.0421, True, "0.042 ms"),
    ("p99>1s", "bench", 1000.0, False, "1000.0 ms"),
    ("avg=1.5s", "ping", 1500.0, True, "1500.0 ms"),
    ("avg!=1.5s", "ping", 1500, False, "1500 ms"),
    ("loss<=1%", "ping", 4.0, False, "4.0 %"),
    ("loss<=1%", "ping", 0, True, "0 %"),
    ("loss<1", "bench", 0.5, True, "0.500 %"),
    ("cert.days>=30", "connect", 62, True, "62 days"),
    ("cert.days>=30", "connect", 12, False, "12 days"),
    ("cert.days>=30", "connect", 1, False, "1 day"),
    ("cert.days>0", "connect", -3, False, "-3 days"),
    ("ports.open>=1", "probe", 3, True, "3"),
    ("rate>=1000", "bench", 1234.56, True, "1234.6"),
    ("errors=0", "bench", 2, False, "2"),
    ("tls.version>=1.2", "connect", "TLSv1.3", True, "TLSv1.3"),
    ("tls.version>=1.2", "connect", "TLSv1.2", True, "TLSv1.2"),
    ("tls.version>=1.2", "connect", "TLSv1.1", False, "TLSv1.1"),
    ("tls.version>=1.0", "connect", "TLSv1", True, "TLSv1"),  # OpenSSL's name for 1.0
    ("tls.version=1.0", "connect", "TLSv1", True, "TLSv1"),
    ("tls.version>=1.0", "connect", "SSLv3", False, "SSLv3"),  # SSLv3 < TLSv1.0
    ("tls.version<1.3", "connect", "SSLv3", True, "SSLv3"),
    ("tls.version!=1.3", "connect", "TLSv1.3", False, "TLSv1.3"),
    ("tls.version<1.3", "connect", "DTLSv1.2", False, "DTLSv1.2"),  # unknown: never passes
    ("tls.version!=1.3", "connect", "unknown", False, "unknown"),
    ("alpn=h2", "connect", "h2", True, "'h2'"),
    ("alpn=h2", "connect", "H2", False, "'H2'"),  # exact
    ("alpn!=h2", "connect", "http/1.1", True, "'http/1.1'"),
    ('banner~"^SSH-2.0"', "probe", "SSH-2.0-OpenSSH_9.2", True, "'SSH-2.0-OpenSSH_9.2'"),
    ("banner~OpenSSH", "probe", "SSH-2.0-OpenSSH_9.2", True, "'SSH-2.0-OpenSSH_9.2'"),  # search
    ("banner~^OpenSSH", "probe", "SSH-2.0-OpenSSH_9.2", False, "'SSH-2.0-OpenSSH_9.2'"),
    ("banner~openssh", "probe", "SSH-2.0-OpenSSH_9.2", False, "'SSH-2.0-OpenSSH_9.2'"),
    ("banner~(?i)openssh", "probe", "SSH-2.0-OpenSSH_9.2", True, "'SSH-2.0-OpenSSH_9.2'"),
    ("banner!~Dropbear", "probe", "SSH-2.0-OpenSSH_9.2", True, "'SSH-2.0-OpenSSH_9.2'"),
    ("banner!~SSH", "probe", "SSH-2.0-OpenSSH_9.2", False, "'SSH-2.0-OpenSSH_9.2'"),
    ("banner=\"220 ok\\r\\n\"", "probe", "220 ok\\r\\n", True, "'220 ok\\\\r\\\\n'"),
    ("verified", "connect", True, True, "yes"),
    ("verified", "connect", False, False, "no"),
    ("!chain.complete", "connect", False, True, "no"),
    ("!chain.complete", "connect", True, False, "yes"),
    ("starttls=yes", "starttls", True, True, "yes"),
])
def test_check(text: str, command: str, have: object, passed: bool, found: str) -> None:
    parsed = parse(text, command)
    assert parsed.check({parsed.name: have, "other": 1}) == Verdict(str(parsed), passed, found)


@pytest.mark.parametrize("text", ["cert.days>=30", "!verified", "alpn!=h2", "tls.version<1.3",
                                  "banner!~x", "connect.ms>0", "loss<=100"])
@pytest.mark.parametrize("facts", [{}, {"cert.days": None, "verified": None, "alpn": None,
                                        "tls.version": None, "banner": None,
                                        "connect.ms": None, "loss": None},
                                   {"connect.ms": float("nan"), "loss": float("nan")}])
def test_what_was_not_measured_fails(text: str, facts: dict[str, object]) -> None:
    command = "connect" if "loss" not in text else "ping"
    parsed = parse(text, command)
    assert parsed.check(facts) == Verdict(str(parsed), False, NOT_MEASURED)


def test_long_text_is_shortened_in_found() -> None:
    found = parse("banner=x", "probe").check({"banner": "A" * 100}).found
    assert found == "'" + "A" * 60 + "'..."


@pytest.mark.parametrize(("text", "command", "have"), [
    ("cert.days>=30", "connect", "62"),
    ("cert.days>=30", "connect", True),   # bool is an int, but not a count
    ("p99<50", "bench", [50]),
    ("verified", "connect", 1),
    ("alpn=h2", "connect", b"h2"),
    ("tls.version>=1.2", "connect", (3, 3)),
])
def test_a_fact_of_the_wrong_type_is_a_caller_bug(text: str, command: str,
                                                  have: object) -> None:
    parsed = parse(text, command)
    with pytest.raises(TypeError, match=f"--expect fact '{parsed.name}' must be"):
        parsed.check({parsed.name: have})


def test_check_all_keeps_order_and_each_verdict() -> None:
    checks = [parse(t, "ping") for t in ("loss<=1%", "p99<50ms", "verified", "cert.days>=30")]
    verdicts = check_all(checks, {"loss": 0.0, "p99": 75.5, "verified": True})
    assert verdicts == [Verdict("loss<=1%", True, "0.000 %"),
                        Verdict("p99<50ms", False, "75.5 ms"),
                        Verdict("verified", True, "yes"),
                        Verdict("cert.days>=30", False, NOT_MEASURED)]
    assert check_all([], {}) == []


def test_an_expectation_built_without_parse_compiles_its_regex_on_use() -> None:
    banner = facts_for("probe")["banner"]
    built = Expectation("banner~SSH", banner, "~", "SSH")
    assert built == parse("banner~SSH", "probe")
    assert built.check({"banner": "xSSHx"}).passed
    assert not built.check({"banner": "xssh"}).passed


# -- GRAMMAR and describe ----------------------------------------------------------------

def test_grammar_examples_parse_and_lines_fit() -> None:
    examples = GRAMMAR.splitlines()[-1].removeprefix("e.g.").split()
    assert len(examples) == 5
    for example in examples:
        assert str(parse(example, "connect"))
    assert all(len(line) <= 100 for line in GRAMMAR.splitlines())
    for op in ("=", "!=", "<", "<=", ">", ">=", "~", "!~", "!NAME"):
        assert f" {op} " in f" {GRAMMAR.replace(chr(10), ' ')} "


def test_describe() -> None:
    text = describe(["p999", "tls", "tls.version", "days-left", "verified", "loss"])
    assert text.splitlines() == [
        "p999         duration     99.9th percentile latency",
        "tls.version  TLS version  negotiated TLS version (also: tls)",
        "cert.days    days         days left on the leaf certificate (also: days-left)",
        "verified     yes/no       certificate chain and name verified",
        "loss         percent      share of attempts that failed",
    ]


def test_describe_every_command_and_unknown_names() -> None:
    for command in COMMANDS:
        facts = facts_for(command)
        lines = describe(facts).splitlines()
        assert [line.split()[0] for line in lines] == list(facts)
    assert describe([]) == ""
    with pytest.raises(ValueError, match="unknown fact 'nope'"):
        describe(["alpn", "nope"])


# -- import cost -------------------------------------------------------------------------

def test_import_pulls_in_nothing_heavy() -> None:
    """Every command imports this module: it must not drag click, anyio, rich, ssl or the
    rest of tcpcli in, nor difflib (only its error path uses it)."""
    code = ("import sys; before = set(sys.modules); import tcpcli.core.expect; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=True).stdout.split()
    ours = {m for m in out if m.startswith("tcpcli")}
    assert ours == {"tcpcli", "tcpcli.core", "tcpcli.core.expect"}
    foreign = {m.partition(".")[0] for m in out} - set(sys.stdlib_module_names) - {"tcpcli"}
    assert not foreign
    for heavy in ("difflib", "dataclasses", "inspect", "decimal", "ssl", "socket", "asyncio"):
        assert heavy not in out


# -- fuzz --------------------------------------------------------------------------------

COMMAND = st.sampled_from(sorted(COMMANDS))
NAMES = sorted({f.name for f in FACTS} | set(ALIASES) | {"foo", "Cert.Days", "TLS", "x."})
OPS = ["=", "==", "!=", "<", "<=", ">", ">=", "~", "!~", "", "=>", "<>", "!", "==="]
SPACE = st.sampled_from(["", " ", "\t"])
NUMBER_TEXT = st.one_of(st.integers(-10**6, 10**20).map(str), st.integers(0, 100).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.floats(0, 100).map(repr), st.sampled_from(["1e-05", "1e+16", "-0"]))
UNITS = ["", "ms", "s", "us", "µs", "%", "d", "days", " ms", "x"]
WORDS = ["1.2", "TLSv1.3", "tls1.0", "TLSv1", "SSLv3", "1.4", "true", "no", "YES", "h2",
         '"^SSH-2.0"', "'a b'", '"unterminated', '"esc\\"aped"', "(", "[a-", "\\", '""', ""]
#: A value of any form: the kind of the name decides whether it fits.
VALUE = st.one_of(st.sampled_from(WORDS),
                  st.tuples(NUMBER_TEXT, st.sampled_from(UNITS)).map("".join),
                  st.text(max_size=12))
JUNK = st.one_of(
    st.text(max_size=30),
    st.text(alphabet='abcdeilmnoprstuvy.-!=<>~ "\'\\0123456789%µ', max_size=25),
    st.sampled_from(["\udcff", "p99<\udc80", "banner=\udce9", "verified\x00"]))


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: Values of the form each kind takes (units and all), so most built checks parse.
FITTING = {
    "duration": st.tuples(st.integers(0, 10**9).map(str) | st.floats(0, 1e9).map(repr),
                          st.sampled_from(["", "ms", "s", "us", "µs", " ms"])).map("".join),
    "percent": st.tuples(st.integers(0, 100).map(str) | st.floats(0, 100).map(repr),
                         st.sampled_from(["", "%", " %"])).map("".join),
    "number": st.tuples(st.integers(-10**6, 10**20).map(str) | st.floats(-1e9, 1e9).map(repr),
                        st.sampled_from(["", "", "d", " days"])).map("".join),
    "version": st.sampled_from(["1.0", "1.3", "TLSv1.2", "tls1.1", "TLSv1", "SSLv3"]),
    "text": st.text(max_size=10).map(quoted) | st.sampled_from(["h2", "^SSH-2.0", "GCM"]),
    "flag": st.sampled_from(["true", "False", "yes", "NO"]),
}
FITTING_OPS = {"text": ["=", "==", "!=", "~", "!~"], "flag": ["", "=", "==", "!="]}


@st.composite
def checks(draw: st.DrawFn) -> tuple[str, str]:
    """(text, command) built from the grammar's pieces: a name the command knows (mostly)
    with an operator and a value of its kind (half the time) or of any form, so many parse
    and many do not."""
    command = draw(COMMAND)
    known = facts_for(command)
    names = [*known, *(alias for alias, target in ALIASES.items() if target in known)]
    name = draw(st.sampled_from(names) | st.sampled_from(NAMES))
    fact = known.get(ALIASES.get(name, name))
    if fact is not None and draw(st.booleans()):
        op = draw(st.sampled_from(FITTING_OPS.get(fact.kind, ["=", "==", "!=", "<", "<=", ">",
                                                              ">="])))
        value = draw(FITTING[fact.kind])
        bang = "!" if fact.kind == "flag" and not op and draw(st.booleans()) else ""
    else:
        bang = draw(st.sampled_from(["", "", "", "!", "! "]))
        op = draw(st.sampled_from(OPS))
        value = draw(VALUE)
    return bang + name + draw(SPACE) + op + (draw(SPACE) + value if op else ""), command


def parse_contract(text: str, command: str) -> None:
    """Only an Expectation or an ExpectSyntaxError; a canonical form that parses back."""
    try:
        parsed = parse(text, command)
    except ExpectSyntaxError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message
        return
    canonical = str(parsed)
    again = parse(canonical, command)
    assert again == parsed and str(again) == canonical
    assert hash(again) == hash(parsed)


@FUZZ
@given(text=JUNK, command=COMMAND)
def test_fuzz_arbitrary_text(text: str, command: str) -> None:
    parse_contract(text, command)


@FUZZ
@given(check=checks())
def test_fuzz_text_from_grammar_pieces(check: tuple[str, str]) -> None:
    parse_contract(*check)


@FUZZ
@given(value=st.text(max_size=20), op=st.sampled_from(["=", "!=", "~", "!~"]))
def test_fuzz_any_quoted_text_parses_to_itself(value: str, op: str) -> None:
    try:
        parsed = parse(f"banner{op}{quoted(value)}", "probe")
    except ExpectSyntaxError as exc:
        message = str(exc)
        assert op in ("~", "!~") and "bad regex" in message  # only a bad regex may fail
        return
    assert parsed.value == value
    assert parse(str(parsed), "probe") == parsed


COMPLEMENT = {"<": ">=", ">=": "<", ">": "<=", "<=": ">", "=": "!=", "!=": "="}


@FUZZ
@given(name=st.sampled_from(["p99", "loss", "cert.days", "rate"]),
       op=st.sampled_from(sorted(COMPLEMENT)),
       threshold=st.integers(0, 100) | st.floats(0, 100).map(lambda x: round(x, 3)),
       have=st.integers(-5, 105) | st.floats(-5, 105))
def test_fuzz_an_operator_and_its_complement_disagree(name: str, op: str,
                                                      threshold: float, have: float) -> None:
    command = "bench" if name != "cert.days" else "connect"
    one = parse(f"{name}{op}{threshold}", command).check({name: have})
    other = parse(f"{name}{COMPLEMENT[op]}{threshold}", command).check({name: have})
    assert one.passed != other.passed and one.found == other.found


@FUZZ
@given(op=st.sampled_from(sorted(COMPLEMENT)),
       want=st.sampled_from(["SSLv3", "1.0", "1.1", "1.2", "1.3"]),
       have=st.sampled_from(["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]))
def test_fuzz_versions_order_like_numbers(op: str, want: str, have: str) -> None:
    rank = ["SSLv3", "1.0", "1.1", "1.2", "1.3"]
    have_rank = ["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"].index(have)
    expected = {"<": have_rank < rank.index(want), ">=": have_rank >= rank.index(want),
                ">": have_rank > rank.index(want), "<=": have_rank <= rank.index(want),
                "=": have_rank == rank.index(want), "!=": have_rank != rank.index(want)}[op]
    assert parse(f"tls.version{op}{want}", "connect").check(
        {"tls.version": have}).passed is expected


def test_the_readme_lists_every_fact_as_the_catalogue_has_it() -> None:
    import re
    from pathlib import Path

    from tcpcli.core.expect import FACTS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- facts:", 1)[1].split("<!-- /facts -->", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (\w+) \| (.+?) \| (.+?) \|$", block, re.M)
    assert rows == [(f.name, f.kind, f.meaning, ", ".join(sorted(f.commands)))
                    for f in FACTS]
