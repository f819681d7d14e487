"""``drop_fields`` while the body streams (docs/configuration.md "Sharing policy"): dropped
members leave with their comma, every other byte stays, any chunking gives the same bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.gateway.hrefs import HrefMatcher
from proxy.sharing.policy import _WAIT_LIMIT, Policy

DEFAULT = Policy.of(["users.password", "*.metadata"])


def filtered(
    body: bytes, cuts: list[int], policy: Policy = DEFAULT, resource: str = "users"
) -> tuple[bytes, Any]:
    stream = policy.stream(resource)
    out, last = [], 0
    for cut in [*cuts, len(body)]:
        out.append(stream.feed(body[last:cut]))
        last = cut
    out.append(stream.close())
    return b"".join(out), stream


def expected(doc: Any, kind_names: dict[str, set[str]]) -> Any:
    """The reference: parsed, each record of a wrapper key stripped of its dropped fields."""
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, value in doc.items():
        kind = {"user": "users", "org": "orgs", "class": "classes"}.get(key, key)
        names = kind_names.get(kind, set()) | kind_names.get("*", set())
        if kind in ("users", "orgs", "classes") and isinstance(value, list):
            value = [
                {k: v for k, v in r.items() if k not in names} if isinstance(r, dict) else r
                for r in value
            ]
        elif kind in ("users", "orgs", "classes") and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in names}
        out[key] = value
    return out


NAMES = {"users": {"password"}, "*": {"metadata"}}


def test_collection_single_record_and_nested_values() -> None:
    doc = {
        "users": [
            {"password": "x", "sourcedId": "u1"},
            {"sourcedId": "u2", "password": "y", "orgs": [{"password": "kept", "href": "h"}]},
            {"sourcedId": "u3", "note": '"password": "text"', "metadata": {"a": [1, {"b": 2}]}},
            {"password": {"nested": ["p"]}},
        ],
        "statusInfoSet": [{"password": "not a record"}],
    }
    for indent in (None, 2):
        body = json.dumps(doc, indent=indent).encode()
        out, stream = filtered(body, [])
        assert json.loads(out) == expected(doc, NAMES)
        assert b'"password": "x"' not in out and b'"kept"' in out
        assert stream.records == 4
        assert sorted(stream.delivered()[1]) == ["note", "orgs", "sourcedId"]
    single = json.dumps({"user": {"sourcedId": "u1", "password": "p"}}).encode()
    assert json.loads(filtered(single, [])[0]) == {"user": {"sourcedId": "u1"}}


def test_nothing_to_drop_is_byte_for_byte() -> None:
    body = json.dumps({"users": [{"sourcedId": "u1", "givenName": "A"}]}, indent=1).encode()
    assert filtered(body, [])[0] == body
    # [] passes everything, still counting.
    raw = json.dumps({"users": [{"password": "p"}]}).encode()
    out, stream = filtered(raw, [], Policy.of([]))
    assert out == raw and stream.records == 1 and stream.delivered()[1] == ["password"]


def test_relationship_paths_give_users_and_named_paths_apply() -> None:
    body = json.dumps({"users": [{"sourcedId": "s", "password": "p"}]}).encode()
    assert b"password" not in filtered(body, [], resource="students")[0]
    schools = json.dumps({"orgs": [{"sourcedId": "o", "identifier": "i"}]}).encode()
    out = filtered(schools, [], Policy.of(["schools.identifier"]), resource="schools")[0]
    assert json.loads(out) == {"orgs": [{"sourcedId": "o"}]}
    out = filtered(schools, [], Policy.of(["orgs.identifier"]), resource="schools")[0]
    assert json.loads(out) == {"orgs": [{"sourcedId": "o"}]}


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"[1, 2, 3]",
        b'{"users": [}',
        b"",
        b'"a string"',
        b'{"a": 1} trailing',
        b'{"users": [{"password": "\xff\xfe latin-1, not UTF-8"}]}',
        '{"users": [{"n": "Zo\u00eb"}]}'.encode()[:-4],  # cut inside nothing special
    ],
)
def test_other_shapes_pass_unchanged(body: bytes) -> None:
    out, _ = filtered(body, [])
    assert out == body and DEFAULT.stream("users").whole(body) == body
    for cut in range(len(body) + 1):
        assert filtered(body, [cut])[0] == body


def test_composes_with_hrefs_in_one_pass() -> None:
    base = "https://d.example/api"
    doc = {"users": [{"password": "p", "orgs": [{"href": base + "/ims/oneroster/o/1"}]}]}
    stream = DEFAULT.stream("users", HrefMatcher.for_district(base).stream("https://p/a/"))
    body = json.dumps(doc).encode()
    out = stream.feed(body[:20]) + stream.feed(body[20:]) + stream.close()
    assert json.loads(out) == {"users": [{"orgs": [{"href": "https://p/a/o/1"}]}]}


def test_memory_held_back_is_bounded() -> None:
    stream = DEFAULT.stream("users")
    record = json.dumps({"sourcedId": "u", "password": "p", "note": "x" * 300})
    chunk = (",".join([record] * 200)).encode()
    stream.feed(b'{"users": [')
    for _ in range(50):
        stream.feed(chunk + b",")
        assert len(stream._carry) < 1024
    # A record is waited for whole up to a bound; a longer one (a long string value) streams
    # through from there, never held whole.
    stream = DEFAULT.stream("users")
    stream.feed(b'{"users": [{"note": "')
    out = 0
    for _ in range(100):
        out += len(stream.feed(b"y" * 65536))
        assert len(stream._carry) <= _WAIT_LIMIT + 65536
    assert out >= 100 * 65536 - _WAIT_LIMIT - 65536


keys = st.sampled_from(["password", "metadata", "sourcedId", "orgs", 'pa"ss', "pass\\word"])
leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6)
values = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
records = st.dictionaries(keys, values, max_size=5)
documents = st.dictionaries(
    st.sampled_from(["users", "user", "orgs", "classes", "statusInfoSet"]),
    st.lists(records, max_size=3) | records,
    max_size=3,
)


@settings(max_examples=150, deadline=None)
@given(doc=documents, indent=st.sampled_from([None, 0, 2]), ascii_only=st.booleans())
def test_property_any_split_gives_the_whole_body_answer(
    doc: Any, indent: int | None, ascii_only: bool
) -> None:
    body = json.dumps(doc, indent=indent, ensure_ascii=ascii_only).encode()
    whole, _ = filtered(body, [])
    assert json.loads(whole) == expected(doc, NAMES)
    assert DEFAULT.stream("users").whole(body) == whole  # a small answer read whole
    for cut in range(len(body) + 1):
        assert filtered(body, [cut])[0] == whole, cut
    assert filtered(body, list(range(1, len(body))))[0] == whole
