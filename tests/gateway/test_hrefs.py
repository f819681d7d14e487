"""``[districts.X] rewrite_hrefs``: JSON ``href`` values naming the district become the proxy's
(docs/http-api.md), streaming, across chunk boundaries, off by default."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.gateway.hrefs import HrefMatcher, is_json
from tests.support import auth, base_config

BASE = "https://springfield.example/campus/api/oneroster/v1p2/acme"
UP = BASE + "/ims/oneroster/"
PUB = "https://proxy.example/app-7/ims/oneroster/"


def rewritten(body: bytes, cuts: list[int]) -> bytes:
    stream = HrefMatcher.for_district(BASE).stream(PUB)
    out, last = [], 0
    for cut in [*cuts, len(body)]:
        out.append(stream.feed(body[last:cut]))
        last = cut
    out.append(stream.close())
    return b"".join(out)


def expected(value: Any) -> Any:
    """The reference: every ``href`` string value under UP, parsed and replaced."""
    if isinstance(value, dict):
        return {
            k: (
                PUB + v[len(UP) :]
                if k == "href" and isinstance(v, str) and v.startswith(UP)
                else expected(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [expected(v) for v in value]
    return value


def test_guidref_hrefs_are_rewritten_and_nothing_else() -> None:
    doc = {
        "user": {
            "sourcedId": "u1",
            "note": f'"href": "{UP}v1p1/x"',  # text inside a string: escaped quotes, kept
            "orgs": [
                {"href": f"{UP}rostering/v1p2/orgs/o1", "sourcedId": "o1", "type": "org"},
                {"href": "https://elsewhere.example/ims/oneroster/x", "type": "org"},
                {"href": BASE + "/other/path", "type": "org"},
            ],
            "url": f"{UP}rostering/v1p2/users/u1",  # not an href key
        }
    }
    body = json.dumps(doc).encode()
    out = rewritten(body, [])
    assert json.loads(out) == expected(doc)
    assert out.count(PUB.encode()) == 1
    assert body.replace(f"{UP}rostering/v1p2/orgs/o1".encode(), b"") == out.replace(
        f"{PUB}rostering/v1p2/orgs/o1".encode(), b""
    ), "every other byte is kept"


@pytest.mark.parametrize(
    "text",
    [
        '{"href":"' + UP.replace("/", "\\/") + '"}',  # PHP's json_encode escapes "/"
        '{"href" :\n  "' + UP + '"}',
        '{"href":"' + UP + '"}',
    ],
)
def test_every_json_spelling_of_the_prefix(text: str) -> None:
    out = rewritten(text.encode(), [])
    assert json.loads(out) == {"href": PUB}


def test_an_escaped_quote_before_href_is_text() -> None:
    body = ('{"a": "x\\"href\\": \\"' + UP + '\\"", "b": ["\\\\"]}').encode()
    assert rewritten(body, []) == body
    # Wherever the body is cut, the backslash before the quote is seen (also across chunks).
    for cut in range(len(body) + 1):
        assert rewritten(body, [cut]) == body, cut
    # A key that ends in an escaped quote and "href" is another key: its value stays.
    other_key = ('{"x\\"href": "' + UP + 'y", "href": "' + UP + 'z"}').encode()
    assert json.loads(rewritten(other_key, [])) == {'x"href': UP + "y", "href": PUB + "z"}
    for cut in range(len(other_key) + 1):
        assert rewritten(other_key, [cut]) == rewritten(other_key, []), cut
    real = ('["\\\\", {"href": "' + UP + 'x"}]').encode()  # an escaped backslash, then a key
    expected_real = real.replace(UP.encode(), PUB.encode())
    for cut in range(len(real) + 1):
        assert rewritten(real, [cut]) == expected_real, cut


def test_public_prefix_is_json_escaped() -> None:
    stream = HrefMatcher.for_district(BASE).stream('https://p.example/a"b/ims/oneroster/')
    out = stream.feed(('{"href": "' + UP + 'x"}').encode()) + stream.close()
    assert json.loads(out) == {"href": 'https://p.example/a"b/ims/oneroster/x'}


def test_is_json() -> None:
    assert is_json("application/json; charset=utf-8")
    assert is_json("application/problem+json")
    assert not is_json("text/csv")
    assert not is_json(None)


refs = st.fixed_dictionaries(
    {
        "href": st.sampled_from([UP, BASE + "/", "https://other.example/", ""]).flatmap(
            lambda p: st.text(max_size=12).map(lambda rest: p + rest)
        ),
        "sourcedId": st.text(max_size=8),
    }
)
documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10) | refs,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["href", "a", "org", 'x"y', 'x"href', "x\\href"]), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@settings(max_examples=120, deadline=None)
@given(doc=documents, indent=st.sampled_from([None, 0, 2]), escape=st.booleans())
def test_property_any_split_gives_the_whole_body_answer(
    doc: Any, indent: int | None, escape: bool
) -> None:
    body = json.dumps(doc, indent=indent, ensure_ascii=escape).encode()
    if escape:
        body = body.replace(b"/", b"\\/")
    whole = rewritten(body, [])
    assert json.loads(whole) == expected(doc)
    for cut in range(len(body) + 1):
        assert rewritten(body, [cut]) == whole, cut
    assert rewritten(body, list(range(1, len(body)))) == whole  # one byte at a time
    # The whole-body path (small pages) gives the same answer, skipping the scan only when no
    # spelling of the prefix is in the body.
    assert HrefMatcher.for_district(BASE).rewrite(body, PUB) == whole


def test_a_page_whose_hrefs_name_another_host_is_passed_as_it_is() -> None:
    matcher = HrefMatcher.for_district(BASE)
    other = json.dumps({"org": {"href": "https://elsewhere.example/ims/oneroster/v1p1/x"}})
    body = other.encode()
    assert matcher.rewrite(body, PUB) is body  # no scan, no copy
    escaped = json.dumps({"org": {"href": UP + "orgs/1"}}).replace("/", "\\/").encode()
    assert json.loads(matcher.rewrite(escaped, PUB)) == {"org": {"href": PUB + "orgs/1"}}


def test_memory_held_back_is_bounded() -> None:
    matcher = HrefMatcher.for_district(BASE)
    stream = matcher.stream(PUB)
    chunk = (json.dumps([{"href": UP + "x" * 50}] * 2000)).encode()
    for _ in range(20):
        stream.feed(chunk)
        assert len(stream._carry) < matcher.longest


async def _users(http: aiohttp.ClientSession, url: str, token: str) -> tuple[Any, Any]:
    async with http.get(url, headers=auth(token)) as resp:
        assert resp.status == 200
        return await resp.json(), resp.headers


async def test_gateway_rewrites_hrefs_by_default_and_false_turns_it_off(
    sandbox: Any, start_proxy: Any, http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    doc = base_config(tmp_path, sandbox)
    doc["districts"]["springfield"]["rewrite_hrefs"] = False
    off = await start_proxy(sandbox, doc)
    token = await off.token()
    url = off.app_url("rostering/v1p2/classes?limit=3")
    body, _ = await _users(http, url, token)
    href = body["classes"][0]["school"]["href"]
    assert href.startswith(sandbox.base_url + "/ims/oneroster/"), "false: untouched"

    del doc["districts"]["springfield"]["rewrite_hrefs"]  # the default: on
    on = await start_proxy(sandbox, doc)
    token = await on.token()
    public = f"{on.url}/app-7/ims/oneroster/"
    # Small pages (read whole) and a large one (streamed in chunks) alike.
    for rest in ("rostering/v1p2/classes?limit=3", "rostering/v1p2/enrollments?limit=5000"):
        body, _ = await _users(http, on.app_url(rest), token)
        records = next(v for v in body.values() if isinstance(v, list))
        hrefs = [
            ref["href"]
            for record in records
            for ref in record.values()
            if isinstance(ref, dict) and "href" in ref
        ]
        assert hrefs and all(h.startswith(public) for h in hrefs), hrefs[:3]
        assert sandbox.base_url not in json.dumps(body)
    # A vendor following a rewritten href stays on the proxy, and it works.
    school, _ = await _users(http, hrefs[0], token)
    assert next(iter(school.values()))["sourcedId"] == hrefs[0].rsplit("/", 1)[1]
