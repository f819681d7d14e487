"""Collection query parameters of a OneRoster district: filter, sort/orderBy, fields, paging.

Implements OneRoster 1.1 §3.4 / OneRoster 1.2 REST binding §3.4 as docs/sandbox.md
asks: ``filter=field op 'value'`` with ops ``= != > >= < <= ~`` and at most one ``AND``/``OR``;
``sort``/``orderBy``; ``fields`` selection; ``limit`` (default 100) and ``offset`` with RFC 5988
``Link`` headers (first, last, next, prev) and ``X-Total-Count``. Errors are the imsx codeMinor
values the specs name: ``invalid_filter_field``, ``invalid_sort_field``,
``invalid_selection_field``.

Fields may be dotted (``school.sourcedId``, ``roles.role``); a list matches when any element
matches, and a GUIDRef compared with a plain value compares its ``sourcedId``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_LIMIT = 100


class QueryError(Exception):
    """A query parameter the district refuses (400)."""

    def __init__(self, code_minor: str, description: str) -> None:
        super().__init__(description)
        self.code_minor = code_minor
        self.description = description


@dataclass(frozen=True)
class Predicate:
    field: str
    op: str
    value: str


@dataclass(frozen=True)
class Filter:
    left: Predicate
    conjunction: str | None = None  # "AND" | "OR"
    right: Predicate | None = None

    def fields(self) -> list[str]:
        return [p.field for p in (self.left, self.right) if p is not None]


# Greedy value: everything between the first quote after the operator and the last quote, so a
# value may itself hold quotes (familyName='O'Brien').
_PREDICATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(!=|>=|<=|=|>|<|~)\s*'(.*)'\s*$", re.S)
_CONJUNCTION = re.compile(r"'\s+(AND|OR)\s+", re.I)
# A value that holds a closing quote followed by a word and another predicate was not one value
# but a second (or third) clause: "a='1' AND b='2' AND c='3'", "a='1' XOR b='2'".
_SMUGGLED = re.compile(r"'\s+\w+\s+[A-Za-z_][\w.]*\s*(?:!=|>=|<=|=|>|<|~)\s*'")


def _predicate(text: str) -> Predicate | None:
    match = _PREDICATE.match(text)
    if match is None or _SMUGGLED.search("'" + match.group(3) + "'"):
        return None
    return Predicate(*match.groups())


def parse_filter(text: str) -> Filter:
    """Parse a OneRoster filter expression; ``QueryError`` if it is not one."""
    for match in _CONJUNCTION.finditer(text):
        left = _predicate(text[: match.start() + 1])
        right = _predicate(text[match.end() :])
        if left and right:
            return Filter(left, match.group(1).upper(), right)
    single = _predicate(text)
    if single is None:
        raise QueryError(
            "invalid_filter_field",
            f"The filter {text!r} is not of the form field op 'value' [AND|OR field op 'value'].",
        )
    return Filter(single)


def _leaves(value: Any, path: list[str]) -> list[Any]:
    """The values found at ``path`` below ``value``, flattening lists on the way."""
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            out.extend(_leaves(item, path))
        return out
    if not path:
        return [value]
    if isinstance(value, dict) and path[0] in value:
        return _leaves(value[path[0]], path[1:])
    return []


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict):
        # A GUIDRef (or a 1.2 role) compared with a plain value: compare what names it.
        for key in ("sourcedId", "role"):
            if key in value:
                return str(value[key])
        return ""
    return str(value)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _compare(left: str, op: str, right: str) -> bool:
    if op == "~":
        return right.casefold() in left.casefold()
    if op in ("=", "!="):
        equal = left == right
        if not equal:
            a, b = _number(left), _number(right)
            equal = a is not None and b is not None and a == b
        return equal if op == "=" else not equal
    a, b = _number(left), _number(right)
    keys: tuple[Any, Any] = (a, b) if a is not None and b is not None else (left, right)
    if op == ">":
        return bool(keys[0] > keys[1])
    if op == ">=":
        return bool(keys[0] >= keys[1])
    if op == "<":
        return bool(keys[0] < keys[1])
    return bool(keys[0] <= keys[1])


def _matches(predicate: Predicate, record: Mapping[str, Any]) -> bool:
    values = [_scalar(v) for v in _leaves(record, predicate.field.split("."))]
    if predicate.op == "!=":
        return all(_compare(v, "!=", predicate.value) for v in values)
    return any(_compare(v, predicate.op, predicate.value) for v in values)


def compile_filter(flt: Filter) -> Callable[[Mapping[str, Any]], bool]:
    if flt.right is None:
        left = flt.left
        return lambda record: _matches(left, record)
    left, right = flt.left, flt.right
    if flt.conjunction == "AND":
        return lambda record: _matches(left, record) and _matches(right, record)
    return lambda record: _matches(left, record) or _matches(right, record)


def _sort_key(field: str) -> Callable[[Mapping[str, Any]], tuple[int, int, float, str]]:
    path = field.split(".")

    def key(record: Mapping[str, Any]) -> tuple[int, int, float, str]:
        values = _leaves(record, path)
        if not values:
            return (1, 0, 0.0, "")  # records without the field sort last
        text = _scalar(values[0])
        number = _number(text) if not isinstance(values[0], str) else None
        if number is not None:
            return (0, 0, number, "")
        return (0, 1, 0.0, text.casefold())

    return key


@dataclass(frozen=True)
class Query:
    """The parsed collection parameters of one request."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    filter: Filter | None = None
    sort: str | None = None
    descending: bool = False
    fields: tuple[str, ...] | None = None

    def validate_fields(self, known: Iterable[str]) -> None:
        """``QueryError`` if a filter, sort or selection names a field the collection lacks."""
        names = set(known)
        if self.filter is not None:
            for field in self.filter.fields():
                if field.split(".")[0] not in names:
                    raise QueryError(
                        "invalid_filter_field", f"Unknown field {field!r} in the filter."
                    )
        if self.sort is not None and self.sort.split(".")[0] not in names:
            raise QueryError("invalid_sort_field", f"Unknown sort field {self.sort!r}.")
        for field in self.fields or ():
            if field not in names:
                raise QueryError("invalid_selection_field", f"Unknown field {field!r} in fields.")

    def apply(self, records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Filter and sort (paging is the caller's, which needs the total)."""
        selected = list(records)
        if self.filter is not None:
            test = compile_filter(self.filter)
            selected = [r for r in selected if test(r)]
        if self.sort is not None:
            selected.sort(key=_sort_key(self.sort), reverse=self.descending)
        return selected

    def select(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        if self.fields is None:
            return record
        return {name: record[name] for name in self.fields if name in record}


def _int_param(params: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError("invaliddata", f"{name} must be an integer, not {raw!r}.") from None
    if value < minimum:
        raise QueryError("invaliddata", f"{name} must be at least {minimum}.")
    return value


def parse_query(params: Mapping[str, str]) -> Query:
    """Read ``limit``, ``offset``, ``filter``, ``sort``, ``orderBy`` and ``fields``."""
    flt = params.get("filter")
    fields_param = params.get("fields")
    fields: tuple[str, ...] | None = None
    if fields_param:
        fields = tuple(f.strip() for f in fields_param.split(","))
        if any(not f for f in fields):
            raise QueryError("invalid_blank_selection_field", "Blank field name in fields.")
    order = (params.get("orderBy") or "asc").lower()
    if order not in ("asc", "desc"):
        raise QueryError("invaliddata", f"orderBy must be asc or desc, not {order!r}.")
    return Query(
        limit=_int_param(params, "limit", DEFAULT_LIMIT, 1),
        offset=_int_param(params, "offset", 0, 0),
        filter=parse_filter(flt) if flt else None,
        sort=params.get("sort") or None,
        descending=order == "desc",
        fields=fields,
    )


def link_header(base_url: str, raw_query: str, total: int, limit: int, offset: int) -> str:
    """RFC 5988 ``Link`` value for a page; other query parameters are kept as received."""
    kept = [
        part
        for part in raw_query.split("&")
        if part and part.split("=", 1)[0] not in ("limit", "offset")
    ]

    def url(page_offset: int) -> str:
        query = "&".join([*kept, f"limit={limit}", f"offset={page_offset}"])
        return f"{base_url}?{query}"

    last = max(0, ((total - 1) // limit) * limit) if total else 0
    links = []
    if offset + limit < total:
        links.append(f'<{url(offset + limit)}>; rel="next"')
    if offset > 0:
        links.append(f'<{url(max(0, offset - limit))}>; rel="prev"')
    links.append(f'<{url(0)}>; rel="first"')
    links.append(f'<{url(last)}>; rel="last"')
    return ", ".join(links)
