"""``drop_fields``: top-level fields removed from the OneRoster records a vendor receives, while
the body streams (docs/configuration.md "Sharing policy").

A district answer is ``{"<collection>": [record, ...], ...}`` (a collection, a relationship
collection) or ``{"<singular>": record, ...}`` (one record): OneRoster 1.1 §4 and the 1.2
REST/JSON bindings. The filter follows that shape with a small incremental tokenizer and
removes a dropped member (``"password": "..."``) together with the comma that separates it;
every other byte passes unchanged. It also counts the records and the names of the fields
that went out (for the access ledger: names only, never a value).

How it stays flat and exact:

* The input is tokenized incrementally: a token cut by a chunk boundary waits for the next
  chunk; string values stream through (their bytes are never held). What is held back between
  chunks is at most one unfinished token, plus, inside a record, the comma and key of a member
  whose name is not known yet (a few bytes).
* Inside a record, a whole member (``"key": value`` with a value nested up to three deep) is
  read by one C-level regular-expression match (possessive quantifiers: no backtracking on a
  cut body); only a member that does not fit falls back to the token loop.
* Anything that is not an object at the top, or stops being valid JSON, passes on unchanged
  from that point (the filter never turns an answer into an error): a district's answer of
  another shape is counted as bytes, not records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Protocol

from proxy.scopes import PATH_KIND

# Record kinds by the key that wraps them: the plural (a collection) or the singular (one
# record). OneRoster 1.1 §4 / 1.2 binding response bodies.
_SINGULAR = {
    "user": "users",
    "org": "orgs",
    "class": "classes",
    "course": "courses",
    "enrollment": "enrollments",
    "academicSession": "academicSessions",
    "demographics": "demographics",
    "lineItem": "lineItems",
    "result": "results",
    "category": "categories",
    "lineItemCategory": "lineItemCategories",
    "resource": "resources",
    "scoreScale": "scoreScales",
    "assessmentLineItem": "assessmentLineItems",
    "assessmentResult": "assessmentResults",
}
_PLURALS = frozenset(_SINGULAR.values())


class BodyFilter(Protocol):
    """A streaming rewrite of a body: ``feed`` each chunk, ``close`` once at the end."""

    def feed(self, chunk: bytes) -> bytes: ...

    def close(self) -> bytes: ...


def wrapper_kind(key: str) -> str | None:
    """The record kind a top-level key holds (``users``, ``user`` -> ``users``), or None."""
    if key in _PLURALS:
        return key
    return _SINGULAR.get(key)


def ledger_collection(resource: str) -> str:
    """The collection an answer is counted under: the record kind the path gives."""
    return PATH_KIND.get(resource, resource)


_WS = rb"[ \t\n\r]*+"
_STR = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_FLAT = rb"(?:[^\"\[\]{}]++|" + _STR + rb")*+"
_C1 = rb"[\[{]" + _FLAT + rb"[\]}]"
_L1 = rb"(?:[^\"\[\]{}]++|" + _STR + rb"|" + _C1 + rb")*+"
_C2 = rb"[\[{]" + _L1 + rb"[\]}]"
_L2 = rb"(?:[^\"\[\]{}]++|" + _STR + rb"|" + _C2 + rb")*+"
_C3 = rb"[\[{]" + _L2 + rb"[\]}]"
_SCALAR = rb"[^ \t\n\r,:\[\]{}\"]++"
# One record member whole: (key)(value), followed by "," or "}".
_MEMBER = re.compile(
    _WS + rb"(" + _STR + rb")" + _WS + rb":" + _WS + rb"(" + _STR + rb"|" + _C3 + rb"|"
    + _SCALAR + rb")" + _WS + rb"(?=[,}])"
)  # fmt: skip
_SPACE = re.compile(_WS)
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+')  # up to the closing quote (or the end)
_SCALAR_RE = re.compile(_SCALAR)

# Frames of the tokenizer's stack.
_TOP, _COLLECTION, _RECORD, _OTHER_OBJ, _OTHER_ARR = range(5)
# Where it is within the innermost frame.
_START, _KEY, _COLON, _VALUE, _AFTER, _FIRST_VALUE = range(6)
_QUOTE, _LBRACE, _RBRACE, _LBRACKET, _RBRACKET, _COMMA, _COLON_B = b'"{}[],:'
_OBJECTS = (_TOP, _RECORD, _OTHER_OBJ)
_ARRAYS = (_COLLECTION, _OTHER_ARR)


def _name(raw: bytes) -> bytes:
    """A key's name as plain UTF-8 (escapes resolved; ``raw`` is the key without quotes)."""
    if b"\\" not in raw:
        return raw
    try:
        return str(json.loads(b'"' + raw + b'"')).encode()
    except ValueError:
        return raw


@dataclass(frozen=True)
class Policy:
    """One connection's ``drop_fields``, compiled once per config load."""

    entries: tuple[str, ...]
    _by_kind: dict[str, frozenset[bytes]] = field(default_factory=dict, repr=False)
    _everywhere: frozenset[bytes] = frozenset()
    _cache: dict[tuple[str, str], frozenset[bytes]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, entries: tuple[str, ...] | list[str]) -> Policy:
        by_kind: dict[str, set[bytes]] = {}
        everywhere: set[bytes] = set()
        for entry in entries:
            kind, _, name = entry.partition(".")
            if kind == "*":
                everywhere.add(name.encode())
            else:
                by_kind.setdefault(kind, set()).add(name.encode())
        return cls(
            tuple(entries),
            {k: frozenset(v) for k, v in by_kind.items()},
            frozenset(everywhere),
        )

    def names_for(self, kind: str, resource: str) -> frozenset[bytes]:
        """The field names dropped from a record of ``kind`` on a path ending in ``resource``:
        the rules of its kind, of ``*``, and of the path's collection as the path names it
        (``schools.x`` for the orgs of ``/schools``)."""
        key = (kind, resource)
        names = self._cache.get(key)
        if names is None:
            by = self._by_kind
            names = self._everywhere | by.get(kind, frozenset())
            if PATH_KIND.get(resource, resource) == kind:
                names |= by.get(resource, frozenset())
            if len(self._cache) < 4096:
                self._cache[key] = names
        return names

    def stream(self, resource: str, then: BodyFilter | None = None) -> FieldStream:
        """A filter for one answer on a path whose last collection is ``resource``, passing
        what it lets out on to ``then``."""
        return FieldStream(self, resource, then)


class FieldStream:
    """The filter of one answer, fed chunk by chunk; ``records`` and ``fields`` count what
    went out."""

    def __init__(self, policy: Policy, resource: str, then: BodyFilter | None = None) -> None:
        # The next filter of the same pass (``rewrite_hrefs``): it sees what this one lets out.
        self.then = then
        self._policy = policy
        self._resource = resource
        self._carry = b""
        self._stack: list[int] = []
        self._state = _START
        self._drops: frozenset[bytes] = frozenset()  # of the innermost record
        self._kind = ""  # the record kind of the collection or record being read
        self._key = b""  # the last key of the top object
        self._hold = -1  # in the carry: start of a held comma (a member not yet judged)
        self._first = True  # no member of the current record went out yet
        self._mute = -1  # stack depth of a dropped member's record; -1: not dropping
        self._eat_comma = False  # the dropped member was the first: drop the comma after it
        self._eat_space = False  # after an eaten comma: the space before the next key too
        self._in_string = False  # inside a string value that streams through
        self._plain = False  # not of the shape: pass the rest unchanged
        self._resume = 0  # where reading goes on in the carry
        self.records = 0
        self.fields: set[bytes] = set()
        self.kinds: set[str] = set()

    # -- the stream ---------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        """The filtered bytes that are final once ``chunk`` has arrived (maybe empty)."""
        if self._plain:
            out = chunk
        else:
            out = self._run(self._carry + chunk if self._carry else chunk, final=False)
        then = self.then
        return out if then is None else then.feed(out)

    def close(self) -> bytes:
        """The bytes held back: call once after the last chunk."""
        buf, self._carry = self._carry, b""
        out = buf if self._plain else self._run(buf, final=True)
        then = self.then
        return out if then is None else then.feed(out) + then.close()

    # -- the tokenizer ------------------------------------------------------------------------

    def _run(self, buf: bytes, *, final: bool) -> bytes:
        out: list[bytes] = []
        done = 0  # bytes before this are out (or dropped)
        pos = self._resume
        self._resume = 0
        end = len(buf)
        stack = self._stack
        try:
            while pos < end:
                if self._mute >= 0:
                    # A dropped member's bytes never go out: what was read of it is done.
                    done = pos
                    if len(stack) == self._mute and self._state == _AFTER:
                        self._mute = -1
                if self._in_string:
                    m = _STRING_REST.match(buf, pos)
                    assert m is not None
                    pos = m.end()
                    if pos < end and buf[pos] == _QUOTE:
                        self._in_string = False
                        self._state = _AFTER
                        pos += 1
                        continue
                    break  # the string goes on (or a backslash waits for what it escapes)
                c = buf[pos]
                if c in b" \t\r\n":
                    pos = _SPACE.match(buf, pos).end()  # type: ignore[union-attr]
                    if self._eat_space:
                        done = pos
                    continue
                self._eat_space = False
                state = self._state
                frame = stack[-1] if stack else -1
                if frame == _RECORD and state in (_START, _KEY) and self._mute < 0:
                    # A whole member in one match, when it is all here.
                    m = _MEMBER.match(buf, pos)
                    if m is not None:
                        name = _name(m.group(1)[1:-1])
                        if name in self._drops:
                            # The member goes, the space after its value stays (as when
                            # it arrives in pieces).
                            out.append(buf[done : pos if self._first else self._hold])
                            done = m.end(2)
                            self._eat_comma = self._first
                        else:
                            self.fields.add(name)
                            self._first = self._eat_comma = False
                        self._hold = -1
                        pos = m.end()
                        self._state = _AFTER
                        continue
                if frame == -1:
                    if state != _START or c != _LBRACE:
                        raise _NotOurs
                    stack.append(_TOP)
                    pos += 1
                elif state in (_START, _KEY) and frame in _OBJECTS:
                    if c == _RBRACE and state == _START:
                        pos += 1
                        self._close_frame()
                        continue
                    if c != _QUOTE:
                        raise _NotOurs
                    m = _STRING_REST.match(buf, pos + 1)
                    assert m is not None
                    close = m.end()
                    if close >= end - 1 and (close == end or buf[close] != _QUOTE):
                        break  # the key is cut (maybe right after a backslash): wait
                    if buf[close] != _QUOTE:
                        raise _NotOurs
                    raw = buf[pos + 1 : close]
                    self._state = _COLON
                    if frame == _TOP:
                        self._key = raw
                    elif frame == _RECORD and self._mute < 0:
                        name = _name(raw)
                        if name in self._drops:
                            out.append(buf[done : pos if self._first else self._hold])
                            self._eat_comma = self._first
                            self._mute = len(stack)
                        else:
                            self.fields.add(name)
                            self._first = self._eat_comma = False
                        self._hold = -1
                    pos = close + 1
                    if self._mute >= 0:
                        done = pos
                elif state == _COLON:
                    if c != _COLON_B:
                        raise _NotOurs
                    pos += 1
                    self._state = _VALUE
                elif state in (_VALUE, _FIRST_VALUE):
                    if state == _FIRST_VALUE and c == _RBRACKET:
                        pos += 1
                        self._close_frame()
                        continue
                    after = self._value(buf, pos, c, end)
                    if after < 0:
                        break  # a number cut at the end: wait for the rest
                    pos = after
                elif state == _AFTER:
                    if c == _COMMA:
                        if frame == _RECORD and self._mute < 0:
                            out.append(buf[done:pos])
                            done = pos
                            if self._eat_comma:
                                # The member before was dropped and was the first: so is
                                # this comma (and the space after it).
                                pos += 1
                                done = pos
                                self._eat_comma = False
                                self._eat_space = True
                            else:
                                self._hold = pos
                                pos += 1
                        else:
                            pos += 1
                        self._state = _KEY if frame in _OBJECTS else _VALUE
                    elif (c == _RBRACE and frame in _OBJECTS) or (
                        c == _RBRACKET and frame in _ARRAYS
                    ):
                        pos += 1
                        self._close_frame()
                    else:
                        raise _NotOurs
                else:
                    raise _NotOurs
        except _NotOurs:
            self._plain = True
            self._hold = -1
            out.append(buf[done:])
            self._carry = b""
            return b"".join(out)
        if self._mute >= 0:
            done = max(done, pos)
            if len(stack) == self._mute and self._state == _AFTER:
                self._mute = -1
        if final:
            # The end of the body: what is left goes out as it came.
            out.append(buf[done:])
            self._carry = b""
            return b"".join(out)
        # Keep back what is not judged yet: a held comma and key, or a cut token.
        keep = pos if self._hold < 0 else min(pos, self._hold)
        if keep > done:
            out.append(buf[done:keep])
            done = keep
        self._carry = buf[done:]
        self._resume = pos - done
        if self._hold >= 0:
            self._hold -= done
        return b"".join(out)

    def _value(self, buf: bytes, pos: int, c: int, end: int) -> int:
        """Read the start of a value at ``pos``: the position after what was read, or
        ``-(pos + 1)`` when it is cut and must wait."""
        stack = self._stack
        frame = stack[-1] if stack else -1
        if c == _QUOTE:
            m = _STRING_REST.match(buf, pos + 1)
            assert m is not None
            close = m.end()
            if close < end and buf[close] == _QUOTE:
                self._state = _AFTER
                return close + 1
            self._in_string = True
            return close
        if c == _LBRACE:
            if frame == _TOP and self._mute < 0:
                kind = wrapper_kind(_name(self._key).decode("utf-8", "replace"))
                if kind is not None:
                    self._record(kind)
                    return pos + 1
            elif frame == _COLLECTION:
                self._record(self._kind)
                return pos + 1
            stack.append(_OTHER_OBJ)
            self._state = _START
            return pos + 1
        if c == _LBRACKET:
            if frame == _TOP and self._mute < 0:
                kind = wrapper_kind(_name(self._key).decode("utf-8", "replace"))
                if kind is not None:
                    self._kind = kind
                    self.kinds.add(kind)
                    stack.append(_COLLECTION)
                    self._state = _FIRST_VALUE
                    return pos + 1
            stack.append(_OTHER_ARR)
            self._state = _FIRST_VALUE
            return pos + 1
        if c in b"]},:":
            raise _NotOurs
        m = _SCALAR_RE.match(buf, pos)
        assert m is not None
        if m.end() >= end:
            return -1  # a number may go on in the next chunk
        self._state = _AFTER
        return m.end()

    def _record(self, kind: str) -> None:
        self._stack.append(_RECORD)
        self._state = _START
        self._kind = kind
        self.kinds.add(kind)
        self._drops = self._policy.names_for(kind, self._resource)
        self._first = True
        self._eat_comma = False
        self.records += 1

    def _close_frame(self) -> None:
        self._stack.pop()
        self._state = _AFTER if self._stack else _END_STATE

    def delivered(self) -> tuple[int, list[str]]:
        """The records that went out and the names of their fields (after the policy)."""
        return self.records, [name.decode("utf-8", "replace") for name in self.fields]


_END_STATE = 99  # after the top value: only whitespace may follow


class _NotOurs(Exception):
    """Not of the shape this filter reads: pass the rest unchanged."""
