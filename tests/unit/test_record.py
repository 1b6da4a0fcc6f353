"""Records behave as the dataclasses they replace: each check runs the same class body
as a real dataclass and as a Record and compares what a caller sees."""

from __future__ import annotations

import dataclasses
import ipaddress
import pickle
from collections import Counter
from typing import Any, ClassVar

import pytest

from tcpcli.record import FrozenRecordError, Record, field, replace, values


@dataclasses.dataclass
class PlainDC:
    name: str
    port: int
    note: str | None = None
    seen: Counter[str] = dataclasses.field(default_factory=Counter)
    LIMIT: ClassVar[int] = 3


class PlainRecord(Record):
    name: str
    port: int
    note: str | None = None
    seen: Counter[str] = field(default_factory=Counter)
    LIMIT: ClassVar[int] = 3


@dataclasses.dataclass(frozen=True)
class FrozenDC:
    profile: str = "workers"
    allow: tuple[str, ...] = ()
    parsed: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed", tuple(a.upper() for a in self.allow))


class FrozenRecord(Record, frozen=True):
    profile: str = "workers"
    allow: tuple[str, ...] = ()
    parsed: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed", tuple(a.upper() for a in self.allow))


def same_repr(record: object, dc: object) -> None:
    assert repr(record).replace("Record", "DC") == repr(dc)


@pytest.mark.parametrize(("args", "kwargs"), [
    (("a", 1), {}),
    (("a",), {"port": 2, "note": "n"}),
    ((), {"name": "a", "port": 3}),
])
def test_construction_and_repr_match(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    record, dc = PlainRecord(*args, **kwargs), PlainDC(*args, **kwargs)
    same_repr(record, dc)
    assert vars(record) == vars(dc) and list(vars(record)) == list(vars(dc))  # JSON order
    assert record == PlainRecord(*args, **kwargs) and record != PlainRecord("other", 9)
    assert record.seen is not PlainRecord(*args, **kwargs).seen  # a new default each time
    assert PlainRecord.LIMIT == 3 and "LIMIT" not in PlainRecord.record_fields


@pytest.mark.parametrize(("args", "kwargs"), [
    ((), {}),  # missing required
    (("a", 1, None, Counter(), "extra"), {}),  # too many
    (("a", 1), {"name": "b"}),  # twice
    (("a", 1), {"bogus": 1}),  # unknown
])
def test_bad_construction_is_a_type_error_both_ways(args: tuple[Any, ...],
                                                     kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        PlainDC(*args, **kwargs)
    with pytest.raises(TypeError):
        PlainRecord(*args, **kwargs)


def test_a_mutable_record_is_unhashable_and_assignable() -> None:
    record = PlainRecord("a", 1)
    record.note = "changed"
    assert record.note == "changed"
    with pytest.raises(TypeError):
        hash(record)


def test_a_frozen_record_refuses_assignment_and_hashes_its_compared_fields() -> None:
    record, dc = FrozenRecord(allow=("x",)), FrozenDC(allow=("x",))
    same_repr(record, dc)
    assert record.parsed == dc.parsed == ("X",)
    assert hash(record) == hash(FrozenRecord(allow=("x",)))
    assert record == FrozenRecord(allow=("x",)) != FrozenRecord(allow=("y",))
    with pytest.raises(FrozenRecordError):
        record.allow = ()  # type: ignore[misc]
    with pytest.raises(FrozenRecordError):
        del record.profile
    with pytest.raises(TypeError):
        FrozenRecord(parsed=())  # type: ignore[call-arg]  # init=False, as in FrozenDC
    assert pickle.loads(pickle.dumps(record)) == record


def test_the_dataclasses_functions_see_a_dataclass() -> None:
    record, dc = FrozenRecord(allow=("x",)), FrozenDC(allow=("x",))
    assert dataclasses.is_dataclass(record) and dataclasses.is_dataclass(FrozenRecord)
    shown = [(f.name, f.type, f.init, f.repr, f.compare) for f in dataclasses.fields(record)]
    assert shown == [(f.name, f.type, f.init, f.repr, f.compare)
                     for f in dataclasses.fields(dc)]
    changed = dataclasses.replace(record, allow=("y", "z"))
    assert isinstance(changed, FrozenRecord) and changed.parsed == ("Y", "Z")
    assert dataclasses.asdict(PlainRecord("a", 1)) == dataclasses.asdict(PlainDC("a", 1))
    assert [f.default for f in dataclasses.fields(PlainRecord)][:3] == [
        dataclasses.MISSING, dataclasses.MISSING, None]


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="non-default field 'late'"):
        class Wrong(Record):
            early: int = 1
            late: int  # type: ignore[misc]


def test_the_librarys_option_types_keep_their_dataclass_api() -> None:
    """ConnectOptions, TLSOptions, Policy and SocketAddress are public: callers may use
    ``dataclasses.replace`` and ``asdict`` on them."""
    import tcpcli

    options = dataclasses.replace(tcpcli.ConnectOptions(), via="127.0.0.1:9")
    assert options.via == "127.0.0.1:9" and options.tls == tcpcli.TLSOptions()
    assert dataclasses.asdict(options)["tls"]["send_sni"] is True
    refusing = tcpcli.Policy.parse("workers")
    allowing = dataclasses.replace(refusing, allow=("127.0.0.1",))  # parsed again
    loopback = ipaddress.ip_address("127.0.0.1")
    assert not refusing.check_address(loopback, 80).allowed
    assert allowing.check_address(loopback, 80).allowed
    with pytest.raises(tcpcli.SocketOptionError):
        dataclasses.replace(tcpcli.TLSOptions(), min_version="TLSv9")  # type: ignore[arg-type]
    assert dataclasses.astuple(tcpcli.SocketAddress("h", 1)) == ("h", 1)


def test_replace_and_values_answer_as_the_dataclasses_functions_do() -> None:
    record, dc = FrozenRecord(allow=("x",)), FrozenDC(allow=("x",))
    changed = replace(record, allow=("y",))
    assert changed.parsed == ("Y",) and changed == dataclasses.replace(record, allow=("y",))
    for wrong in ({"parsed": ()}, {"bogus": 1}):
        with pytest.raises(TypeError):
            replace(record, **wrong)
        with pytest.raises((TypeError, ValueError)):
            dataclasses.replace(dc, **wrong)
    assert replace(dc, allow=("z",)) == dataclasses.replace(dc, allow=("z",))  # a dataclass
    plain = PlainRecord("a", 1)
    assert values(plain) == dataclasses.asdict(PlainDC("a", 1))
    assert list(values(plain)) == list(plain.record_fields)
