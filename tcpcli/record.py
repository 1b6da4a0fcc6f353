"""Data classes whose methods are written once, here, instead of compiled per class.

``dataclass()`` writes the source of ``__init__``, ``__repr__`` and ``__eq__`` (for a
frozen class also ``__setattr__``, ``__delattr__`` and ``__hash__``) and compiles it for
each class while its module is imported: on Python 3.11 that is 0.3 to 1 ms a class, and
a one-shot run imports a dozen of them, where all of click costs 20 ms.

A :class:`Record` behaves as a dataclass does (construction by position or keyword,
defaults, ``field(default_factory=..., init=..., repr=..., compare=...)``,
``__post_init__``, ``frozen=True``, equality, repr and hash) through methods that read
the field list ``__init_subclass__`` collects. Type checkers see a dataclass
(``dataclass_transform``), and so does the ``dataclasses`` module: ``fields()``,
``replace()``, ``asdict()`` and ``is_dataclass()`` work on records, through a
``__dataclass_fields__`` built on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, dataclass_transform

if TYPE_CHECKING:
    import dataclasses

T = TypeVar("T")

_MISSING: Any = object()


class _Spec:
    """What ``field()`` says of a field beyond its default."""

    __slots__ = ("compare", "default_factory", "init", "repr")

    def __init__(self, default_factory: Callable[[], Any] | None, init: bool, repr: bool,
                 compare: bool) -> None:
        self.default_factory, self.init, self.repr, self.compare = \
            default_factory, init, repr, compare


def field(*, default_factory: Callable[[], T] | None = None, init: bool = True,
          repr: bool = True, compare: bool = True) -> T:
    """A field made anew for each record by ``default_factory``, or one left out of
    ``__init__`` (set by ``__post_init__``), ``repr`` or equality."""
    return _Spec(default_factory, init, repr, compare)  # type: ignore[return-value]


class FrozenRecordError(AttributeError):
    """Assigning to or deleting a field of a frozen record (what dataclasses'
    ``FrozenInstanceError`` is for a frozen dataclass)."""


class _DataclassFields:
    """``__dataclass_fields__``, for the ``dataclasses`` functions: built on first use by
    making a method-less dataclass of the same fields, and kept on the class."""

    def __get__(self, instance: object, owner: type[Record]) -> dict[str, dataclasses.Field[Any]]:
        built: dict[str, dataclasses.Field[Any]] | None = owner.__dict__.get("_record_dataclass")
        if built is None:
            import dataclasses

            specs = []
            for name in owner.record_fields:
                default = owner._record_defaults.get(name, _MISSING)
                spec = owner._record_specs.get(name)
                options: dict[str, Any] = {}
                if spec is not None:
                    options.update(init=spec.init, repr=spec.repr, compare=spec.compare)
                    if spec.default_factory is not None:
                        options["default_factory"] = spec.default_factory
                elif default is not _MISSING:
                    options["default"] = default
                specs.append((name, owner._record_types[name], dataclasses.field(**options)))
            shadow = dataclasses.make_dataclass(owner.__name__, specs, init=False, repr=False,
                                                eq=False, frozen=owner.record_frozen)
            built = shadow.__dataclass_fields__  # type: ignore[attr-defined]
            assert built is not None
            type.__setattr__(owner, "_record_dataclass", built)
        return built


@dataclass_transform(field_specifiers=(field,))
class Record:
    """A dataclass-like base: annotated class attributes are the fields, in order."""

    #: The fields in order, bases' first.
    record_fields: ClassVar[tuple[str, ...]] = ()
    record_frozen: ClassVar[bool] = False
    _record_types: ClassVar[dict[str, Any]] = {}
    _record_defaults: ClassVar[dict[str, Any]] = {}  # a value, or a _Spec with a factory
    _record_specs: ClassVar[dict[str, _Spec]] = {}
    _record_init: ClassVar[tuple[str, ...]] = ()  # the fields __init__ takes
    _record_template: ClassVar[dict[str, Any]] = {}  # each of those -> default or _MISSING
    _record_required: ClassVar[tuple[str, ...]] = ()  # those without a default
    _record_made: ClassVar[tuple[tuple[str, _Spec], ...]] = ()  # fields with a factory
    _record_post_init: ClassVar[bool] = False
    _record_shown: ClassVar[tuple[str, ...]] = ()  # in repr
    _record_compared: ClassVar[tuple[str, ...]] = ()  # in equality and hash
    __dataclass_fields__: ClassVar[_DataclassFields] = _DataclassFields()

    def __init_subclass__(cls, *, frozen: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = list(cls.record_fields)
        types, defaults = dict(cls._record_types), dict(cls._record_defaults)
        specs = dict(cls._record_specs)
        own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 (no inspect import)
        for name, annotation in own.items():
            if "ClassVar" in str(annotation):
                continue
            if name not in names:
                names.append(name)
            types[name] = annotation
            value = cls.__dict__.get(name, _MISSING)
            if isinstance(value, _Spec):
                specs[name] = value
                delattr(cls, name)  # as dataclass() does: no shared mutable default
                if value.default_factory is not None:
                    defaults[name] = value
            elif value is not _MISSING:
                defaults[name] = value
            elif defaults and name not in defaults:
                raise TypeError(f"non-default field {name!r} follows a default field in "
                                f"{cls.__qualname__}")
        cls.record_fields = tuple(names)
        cls._record_types, cls._record_defaults, cls._record_specs = types, defaults, specs
        cls._record_init = tuple(n for n in names if n not in specs or specs[n].init)
        cls._record_template = {n: defaults.get(n, _MISSING) for n in cls._record_init}
        cls._record_required = tuple(n for n in cls._record_init if n not in defaults)
        cls._record_made = tuple((n, spec) for n, spec in specs.items()
                                 if spec.default_factory is not None)
        cls._record_post_init = hasattr(cls, "__post_init__")
        cls._record_shown = tuple(n for n in names if n not in specs or specs[n].repr)
        cls._record_compared = tuple(n for n in names if n not in specs or specs[n].compare)
        cls.record_frozen = frozen or cls.record_frozen
        # As dataclass(eq=True): a mutable record equal by value is unhashable; a frozen
        # one hashes its values and refuses assignment to its fields.
        methods = _FROZEN_METHODS if cls.record_frozen else {"__hash__": None}
        for method_name, method in methods.items():
            setattr(cls, method_name, method)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        values = cls._record_template.copy()  # every __init__ field, in order
        if args:
            names = cls._record_init
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments "
                                f"but {len(args)} were given")
            for name, value in zip(names, args, strict=False):
                if name in kwargs:
                    raise TypeError(f"{cls.__name__}() got multiple values for argument "
                                    f"{name!r}")
                values[name] = value
        if kwargs:
            values.update(kwargs)
            if len(values) != len(cls._record_init):
                unknown = next(name for name in kwargs if name not in cls._record_template)
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument "
                                f"{unknown!r}")
        for name in cls._record_required:
            if values[name] is _MISSING:
                raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
        for name, spec in cls._record_made:
            if values.get(name, spec) is spec:  # not given, or not an __init__ field
                values[name] = spec.default_factory()
        self.__dict__.update(values)
        if cls._record_post_init:
            self.__post_init__()  # type: ignore[attr-defined]

    def _compared(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._record_compared)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._record_shown)
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._compared() == other._compared()


def _frozen_hash(self: Record) -> int:
    return hash(self._compared())


def _frozen_setattr(self: Record, name: str, value: object) -> None:
    if name in self.record_fields:
        raise FrozenRecordError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _frozen_delattr(self: Record, name: str) -> None:
    if name in self.record_fields:
        raise FrozenRecordError(f"cannot delete field {name!r}")
    object.__delattr__(self, name)


_FROZEN_METHODS: dict[str, object] = {"__hash__": _frozen_hash,
                                      "__setattr__": _frozen_setattr,
                                      "__delattr__": _frozen_delattr}


R = TypeVar("R")


def replace(obj: R, /, **changes: Any) -> R:
    """``dataclasses.replace`` without building ``__dataclass_fields__`` for a record: a
    new one through ``__init__`` (so its ``__post_init__`` checks run again) with the
    ``changes``. Anything else goes to ``dataclasses.replace``."""
    if not isinstance(obj, Record):
        import dataclasses

        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    cls = type(obj)
    for name in changes:
        if name not in cls._record_template:
            what = "is not a field" if name not in cls.record_fields else \
                "is declared with init=False"
            raise TypeError(f"{cls.__name__}.{name} {what}: replace() cannot set it")
    kept = {name: getattr(obj, name) for name in cls._record_init if name not in changes}
    return cls(**kept, **changes)


def values(record: Record) -> dict[str, Any]:
    """The fields and their values, in order: ``dataclasses.asdict`` of a record, without
    its deep copy (a nested record stays a record)."""
    return {name: getattr(record, name) for name in record.record_fields}
