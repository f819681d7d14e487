"""``drop_fields``: top-level fields removed from the OneRoster records a vendor receives, while
the body streams (docs/configuration.md "Sharing policy").

A district answer is ``{"<collection>": [record, ...], ...}`` (a collection, a relationship
collection) or ``{"<singular>": record, ...}`` (one record): OneRoster 1.1 §4 and the 1.2
REST/JSON bindings. The filter follows that shape with a small incremental tokenizer and
removes a dropped member (``"password": "..."``) together with the comma that separates it;
every other byte passes unchanged. It also counts the records and the names of the fields
that went out (for the access ledger: names only, never a value).

How it stays flat, exact and fast enough:

* The body is read as UTF-8 text (a character cut between chunks waits in the decoder) and
  written back as the same characters, which for valid UTF-8 is the district's own bytes.
* A record of a collection is read whole by the standard library's C JSON scanner (its end
  and its top-level names in one call; JSON, RFC 8259); a record with one member to drop is
  cut after one more scan of that member. A record cut by a chunk's end waits for the next
  chunk, up to ``_WAIT_LIMIT`` characters. Anything else (single records, the top object,
  deeper or longer records) goes through a small incremental tokenizer: a token cut by a
  chunk boundary waits, string values stream through, and what is held back is at most one
  unfinished token plus, inside a record, the comma and key of a member not yet judged.
* Anything that is not an object at the top, or stops being valid JSON, passes on unchanged
  from that point (the filter never turns an answer into an error): a district's answer of
  another shape is counted as bytes, not records.

What bounds its speed: the scanner builds each record as Python objects (about the speed of
``json.loads``, ~100 MB/s here), far below a byte copy; bench/README.md has the figures.
"""

from __future__ import annotations

import codecs
import json
import json.scanner
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


_WS = r"[ \t\n\r]*+"
_STR = r'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_FLAT = r"(?:[^\"\[\]{}]++|" + _STR + r")*+"
_C1 = r"[\[{]" + _FLAT + r"[\]}]"
_L1 = r"(?:[^\"\[\]{}]++|" + _STR + r"|" + _C1 + r")*+"
_C2 = r"[\[{]" + _L1 + r"[\]}]"
_L2 = r"(?:[^\"\[\]{}]++|" + _STR + r"|" + _C2 + r")*+"
_C3 = r"[\[{]" + _L2 + r"[\]}]"
_SCALAR = r"[^ \t\n\r,:\[\]{}\"]++"
_ANY = _STR + r"|" + _C3 + r"|" + _SCALAR
# One record member whole: (key)(value), followed by "," or "}".
_MEMBER = re.compile(
    _WS + r"(" + _STR + r")" + _WS + r":" + _WS + r"(" + _ANY + r")" + _WS + r"(?=[,}])"
)
# The members of a record one after the other: (space before)(key)...(value end)(space
# after)(comma).
_SPANS = re.compile(
    r"(" + _WS + r")(" + _STR + r")" + _WS + r":" + _WS + r"(?:" + _ANY + r")()(" + _WS + r")(,?)"
)
_SPACE = re.compile(_WS)
# A record cut by a chunk's end waits for the rest up to this many characters (then it is
# read member by member, which holds back nothing): records are a few KB.
_WAIT_LIMIT = 1 << 20
_STRING_REST = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+')  # up to the closing quote (or the end)
_SCALAR_RE = re.compile(_SCALAR)
# The standard library's C scanner: one JSON value from a position, and where it ends.
_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]

# Frames of the tokenizer's stack.
_TOP, _COLLECTION, _RECORD, _OTHER_OBJ, _OTHER_ARR = range(5)
# Where it is within the innermost frame.
_START, _KEY, _COLON, _VALUE, _AFTER, _FIRST_VALUE = range(6)
_QUOTE, _LBRACE, _RBRACE, _LBRACKET, _RBRACKET, _COMMA, _COLON_B = '"{}[],:'
_OBJECTS = (_TOP, _RECORD, _OTHER_OBJ)
_ARRAYS = (_COLLECTION, _OTHER_ARR)


def _name(raw: str) -> str:
    """A key's name (escapes resolved; ``raw`` is the key without its quotes)."""
    if "\\" not in raw:
        return raw
    try:
        return str(json.loads('"' + raw + '"'))
    except ValueError:
        return raw


@dataclass(frozen=True)
class Policy:
    """One connection's ``drop_fields``, compiled once per config load."""

    entries: tuple[str, ...]
    _by_kind: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    _everywhere: frozenset[str] = frozenset()
    _cache: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, entries: tuple[str, ...] | list[str]) -> Policy:
        by_kind: dict[str, set[str]] = {}
        everywhere: set[str] = set()
        for entry in entries:
            kind, _, name = entry.partition(".")
            if kind == "*":
                everywhere.add(name)
            else:
                by_kind.setdefault(kind, set()).add(name)
        return cls(
            tuple(entries),
            {k: frozenset(v) for k, v in by_kind.items()},
            frozenset(everywhere),
        )

    def names_for(self, kind: str, resource: str) -> frozenset[str]:
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

    def changes(self, resource: str) -> bool:
        """Whether an answer on a path ending in ``resource`` may lose fields: only then does
        the district's ``Content-Length`` go (records of the kind the path gives)."""
        return bool(self.names_for(PATH_KIND.get(resource, resource), resource))

    def stream(
        self, resource: str, then: BodyFilter | None = None, *, cut: bool = True
    ) -> FieldStream:
        """A filter for one answer on a path whose last collection is ``resource``, passing
        what it lets out on to ``then``; with ``cut`` false it only counts (the answer keeps
        its length)."""
        return FieldStream(self if cut else _COUNT_ONLY, resource, then)


class FieldStream:
    """The filter of one answer, fed chunk by chunk; ``records`` and ``fields`` count what
    went out."""

    def __init__(self, policy: Policy, resource: str, then: BodyFilter | None = None) -> None:
        # The next filter of the same pass (``rewrite_hrefs``): it sees what this one lets out.
        self.then = then
        self._policy = policy
        self._resource = resource
        self._carry = ""
        self._decoder: codecs.IncrementalDecoder | None = None  # made on the first chunk
        self._stack: list[int] = []
        self._state = _START
        self._drops: frozenset[str] = frozenset()  # of the innermost record
        self._kind = ""  # the record kind of the collection or record being read
        self._key = ""  # the last key of the top object
        self._hold = -1  # in the carry: start of a held comma (a member not yet judged)
        self._first = True  # no member of the current record went out yet
        self._mute = -1  # stack depth of a dropped member's record; -1: not dropping
        self._eat_comma = False  # the dropped member was the first: drop the comma after it
        self._eat_space = False  # after an eaten comma: the space before the next key too
        self._in_string = False  # inside a string value that streams through
        self._plain = False  # not of the shape: pass the rest unchanged
        self._resume = 0  # where reading goes on in the carry
        self.records = 0
        self.fields: set[str] = set()
        self.kinds: set[str] = set()

    # -- the stream ---------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        """The filtered bytes that are final once ``chunk`` has arrived (maybe empty)."""
        out = chunk if self._plain else self._text(chunk, final=False)
        then = self.then
        return out if then is None else then.feed(out)

    def close(self) -> bytes:
        """The bytes held back: call once after the last chunk."""
        out = b"" if self._plain else self._text(b"", final=True)
        then = self.then
        return out if then is None else then.feed(out) + then.close()

    def whole(self, body: bytes) -> bytes:
        """A whole body at once (a small answer read whole): what ``feed`` and ``close`` give."""
        if self._decoder is not None or self._carry:
            return self.feed(body) + self.close()
        try:
            text = body.decode()
        except UnicodeDecodeError:
            self._plain = True
            out = body
        else:
            out = self._run(text, final=True).encode()
        then = self.then
        return out if then is None else then.feed(out) + then.close()

    def _text(self, chunk: bytes, *, final: bool) -> bytes:
        # Read as text (a character cut between chunks waits in the decoder); what goes out is
        # the same characters encoded again: the district's own bytes, since valid UTF-8 reads
        # and writes back exactly. Not UTF-8 is not JSON (RFC 8259 §8.1): passed on as it is.
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            text = decoder.decode(chunk, final)
        except UnicodeDecodeError:
            # The decoder keeps what it held before the failing chunk.
            self._plain = True
            carry, self._carry = self._carry, ""
            return carry.encode() + decoder.getstate()[0] + chunk
        buf = self._carry + text if self._carry else text
        return self._run(buf, final=final).encode()

    # -- the tokenizer ------------------------------------------------------------------------

    def _run(self, buf: str, *, final: bool) -> str:
        out: list[str] = []
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
                if c in " \t\r\n":
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
                    if c == _LBRACE and frame == _COLLECTION and self._mute < 0:
                        after, done = self._records(buf, pos, out, done)
                        if after:
                            pos = after
                            self._state = _AFTER
                            continue
                        if not final and end - pos < _WAIT_LIMIT:
                            break  # a record cut by the chunk's end: read it whole next time
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
            self._carry = ""
            return "".join(out)
        if self._mute >= 0:
            done = max(done, pos)
            if len(stack) == self._mute and self._state == _AFTER:
                self._mute = -1
        if final:
            # The end of the body: what is left goes out as it came.
            out.append(buf[done:])
            self._carry = ""
            return "".join(out)
        # Keep back what is not judged yet: a held comma and key, or a cut token.
        keep = pos if self._hold < 0 else min(pos, self._hold)
        if keep > done:
            out.append(buf[done:keep])
            done = keep
        self._carry = buf[done:]
        self._resume = pos - done
        if self._hold >= 0:
            self._hold -= done
        return "".join(out)

    def _value(self, buf: str, pos: int, c: str, end: int) -> int:
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
                kind = wrapper_kind(_name(self._key))
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
                kind = wrapper_kind(_name(self._key))
                if kind is not None:
                    self._kind = kind
                    self.kinds.add(kind)
                    self._drops = self._policy.names_for(kind, self._resource)
                    stack.append(_COLLECTION)
                    self._state = _FIRST_VALUE
                    return pos + 1
            stack.append(_OTHER_ARR)
            self._state = _FIRST_VALUE
            return pos + 1
        if c in "]},:":
            raise _NotOurs
        m = _SCALAR_RE.match(buf, pos)
        assert m is not None
        if m.end() >= end:
            return -1  # a number may go on in the next chunk
        self._state = _AFTER
        return m.end()

    def _records(self, buf: str, pos: int, out: list[str], done: int) -> tuple[int, int]:
        """Records of a collection read whole, one after another from ``pos``, while they are
        all here (the common case): the C scanner finds each one's end and top-level names;
        members to drop are cut as the member-by-member path would cut them (what went out
        before a cut is appended to ``out``). Returns where the last record read ends (0 if
        none: read it member by member, or wait) and the new ``done``."""
        scan = _SCAN
        drops = self._drops
        fields = self.fields
        last = 0
        while True:
            try:
                record, after = scan(buf, pos)
            except (ValueError, StopIteration, RecursionError):
                break  # cut by the chunk's end (or not JSON): the slow path knows what to do
            if drops and not drops.isdisjoint(record):
                cuts = _one_cut(buf, pos, after, record, drops)
                if cuts is not None:
                    fields.update(record.keys() - drops)
                else:
                    cuts = self._cuts(buf, pos + 1, after - 1)
                if cuts is None:
                    break
                for start, stop in cuts:
                    out.append(buf[done:start])
                    done = stop
            else:
                fields.update(record)
            self.records += 1
            last = after
            # The next record right after a comma: read on without the token loop.
            if not buf.startswith(",{", after):
                break
            pos = after + 1
        return last, done

    def _cuts(self, buf: str, start: int, end: int) -> list[tuple[int, int]] | None:
        """The ranges to cut from a record's members between ``start`` and ``end`` (its braces
        excluded), the kept names counted; None when its values nest deeper than the member
        pattern reads."""
        drops = self._drops
        kept: list[str] = []
        cuts: list[tuple[int, int]] = []
        first = True  # no member kept yet
        eat = False  # the space before this member follows an eaten comma
        comma = -1  # where the previous member's comma is
        at = start
        for m in _SPANS.finditer(buf, start, end):
            if m.start() != at or (m.end() == at and at < end):
                return None
            at = m.end()
            if eat and m.end(1) > m.start(1):
                cuts.append((m.start(1), m.end(1)))
            eat = False
            name = _name(m.group(2)[1:-1])
            if name in drops:
                if first:
                    cuts.append((m.start(2), m.end(3)))
                    if m.end(5) > m.start(5):
                        cuts.append((m.start(5), m.end(5)))
                        eat = True
                else:
                    cuts.append((comma, m.end(3)))
            else:
                kept.append(name)
                first = False
            comma = m.start(5)
            if at >= end:
                break
        if at != end:
            return None
        self.fields.update(kept)
        return cuts

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
        return self.records, list(self.fields)


def _one_cut(
    buf: str, pos: int, after: int, record: dict[str, object], drops: frozenset[str]
) -> list[tuple[int, int]] | None:
    """The cuts for a record with one member to drop, found by the C scanner alone; None for
    anything else (the member pattern decides then).

    The key must be written plainly, once, in a record without ``\\u`` escapes: only a
    ``\\u`` escape can spell a name's letters another way, so that one occurrence is the
    record's own member (the scanner saw it at the top). Otherwise the record without the cut
    must read as the record without that field."""
    hits = [k for k in record if k in drops]
    if len(hits) != 1:
        return None
    name = hits[0]
    quoted = '"' + name + '"'
    at = buf.find(quoted, pos, after)
    if at < 0:
        return None
    sure = buf.find(quoted, at + 1, after) < 0 and buf.find("\\u", pos, after) < 0
    while at >= 0:
        cuts = _member_cut(buf, pos, at, len(quoted))
        if cuts is not None:
            if sure:
                return cuts
            rest = buf[pos : cuts[0][0]] + "".join(
                buf[a:b] for (_, a), (b, _) in zip(cuts, [*cuts[1:], (after, 0)], strict=True)
            )
            try:
                again, stop = _SCAN(rest, 0)
            except (ValueError, StopIteration, RecursionError):
                again, stop = None, -1
            if stop == len(rest) and again == {k: v for k, v in record.items() if k != name}:
                return cuts
        at = buf.find(quoted, at + 1, after)
    return None


def _member_cut(buf: str, pos: int, at: int, size: int) -> list[tuple[int, int]] | None:
    """The cuts of the member whose key starts at ``at``, as the member-by-member path makes
    them (with the comma before it, or, for the first member, the comma and space after it);
    None if ``at`` is not the start of a key."""
    head = buf[pos:at].rstrip(" \t\r\n")
    before = head[-1:]
    colon = _SPACE.match(buf, at + size).end()  # type: ignore[union-attr]
    if before not in ("{", ",") or buf[colon : colon + 1] != ":":
        return None
    value = _SPACE.match(buf, colon + 1).end()  # type: ignore[union-attr]
    try:
        _, end = _SCAN(buf, value)
    except (ValueError, StopIteration, RecursionError):
        return None
    if before == ",":
        return [(pos + len(head) - 1, end)]
    cuts = [(at, end)]
    comma = _SPACE.match(buf, end).end()  # type: ignore[union-attr]
    if buf[comma : comma + 1] == ",":
        cuts.append((comma, _SPACE.match(buf, comma + 1).end()))  # type: ignore[union-attr]
    return cuts


_COUNT_ONLY = Policy.of(())
_END_STATE = 99  # after the top value: only whitespace may follow


class _NotOurs(Exception):
    """Not of the shape this filter reads: pass the rest unchanged."""
