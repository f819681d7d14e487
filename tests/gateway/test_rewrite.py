"""proxy.gateway.rewrite: Link rewriting, hop-by-hop removal, public base (docs/http-api.md)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.errors import BadRequest
from proxy.gateway.rewrite import (
    HOP_BY_HOP,
    UpstreamPrefix,
    public_base,
    public_prefix,
    request_headers,
    response_headers,
    rewrite_link,
    upstream_prefix,
)

UP = "https://springfield.example/campus/api/oneroster/v1p2/acme/ims/oneroster/"
PUB = "https://proxy.example/app-7/ims/oneroster/"


def test_single_link():
    value = f'<{UP}v1p1/users?limit=100&offset=100>; rel="next"'
    assert rewrite_link(value, UP, PUB) == f'<{PUB}v1p1/users?limit=100&offset=100>; rel="next"'


def test_four_paging_links_in_one_header_keep_queries_exactly():
    query = "filter=familyName%3D%27O%27Brien%27%20AND%20role%3D%27student%27&limit=100&offset=200"
    links = ", ".join(
        f'<{UP}rostering/v1p2/users?{query}>; rel="{rel}"'
        for rel in ("first", "prev", "next", "last")
    )
    out = rewrite_link(links, UP, PUB)
    assert out == links.replace(UP, PUB)
    assert out.count(query) == 4


def test_params_with_commas_quotes_and_angle_brackets_are_untouched():
    value = (
        f'<{UP}v1p1/users?offset=1>; rel="next"; title="a, <b>; \\"c\\", d", '
        f"<{UP}v1p1/users?offset=0>; rel=first; foo=bar"
    )
    out = rewrite_link(value, UP, PUB)
    assert out == (
        f'<{PUB}v1p1/users?offset=1>; rel="next"; title="a, <b>; \\"c\\", d", '
        f"<{PUB}v1p1/users?offset=0>; rel=first; foo=bar"
    )


def test_url_inside_a_quoted_param_is_not_rewritten():
    value = f'<{UP}v1p1/users>; rel="next"; anchor="<{UP}v1p1/x>"'
    assert rewrite_link(value, UP, PUB) == f'<{PUB}v1p1/users>; rel="next"; anchor="<{UP}v1p1/x>"'


def test_very_long_link():
    long_filter = "filter=" + "givenName%3D%27" + "x" * 20_000 + "%27"
    value = f'<{UP}v1p1/users?{long_filter}&offset=100>; rel="next"'
    out = rewrite_link(value, UP, PUB)
    assert out == f'<{PUB}v1p1/users?{long_filter}&offset=100>; rel="next"'


@pytest.mark.parametrize(
    "url",
    [
        "HTTPS://Springfield.Example/campus/api/oneroster/v1p2/acme/ims/oneroster/v1p1/users?x=1",
        "https://springfield.example:443/campus/api/oneroster/v1p2/acme/ims/oneroster/v1p1/users?x=1",
        "//springfield.example/campus/api/oneroster/v1p2/acme/ims/oneroster/v1p1/users?x=1",
        "/campus/api/oneroster/v1p2/acme/ims/oneroster/v1p1/users?x=1",
    ],
)
def test_equivalent_district_urls_are_rewritten(url):
    assert rewrite_link(f"<{url}>; rel=next", UP, PUB) == f"<{PUB}v1p1/users?x=1>; rel=next"


@pytest.mark.parametrize(
    "url",
    [
        "https://elsewhere.example/campus/api/oneroster/v1p2/acme/ims/oneroster/v1p1/users",
        "http://springfield.example/campus/api/oneroster/v1p2/acme/ims/oneroster/v1p1/users",
        "https://springfield.example:8443/campus/api/oneroster/v1p2/acme/ims/oneroster/v1p1/u",
        "https://springfield.example.evil/campus/api/oneroster/v1p2/acme/ims/oneroster/v1p1/u",
        "https://user@springfield.example/campus/api/oneroster/v1p2/acme/ims/oneroster/v1p1/u",
        "https://springfield.example/campus/api/OTHER/ims/oneroster/v1p1/users",
        "https://springfield.example/campus/api/oneroster/v1p2/acme/ims/onerosterX/v1p1/users",
        "https://springfield.example/CAMPUS/api/oneroster/v1p2/acme/ims/oneroster/v1p1/users",
        "/other/ims/oneroster/v1p1/users",
        "v1p1/users?offset=100",  # relative: already resolves against the proxy's URL
        "?offset=100",
        "mailto:someone@springfield.example",
        "",
    ],
)
def test_other_urls_are_left_untouched(url):
    value = f"<{url}>; rel=next"
    assert rewrite_link(value, UP, PUB) == value


def test_prefix_without_trailing_part():
    up = UP.rstrip("/")
    assert rewrite_link(f"<{up}>; rel=x", UP, PUB) == f"<{PUB.rstrip('/')}>; rel=x"
    assert rewrite_link(f"<{up}?a=1>; rel=x", UP, PUB) == f"<{PUB.rstrip('/')}?a=1>; rel=x"


def test_default_ports_and_ipv6():
    up = "http://[::1]:8080/ims/oneroster/"
    assert rewrite_link("<http://[::1]:8080/ims/oneroster/v1p1/users>", up, PUB) == (
        f"<{PUB}v1p1/users>"
    )
    assert rewrite_link("<http://[::1]/ims/oneroster/v1p1/users>", up, PUB) == (
        "<http://[::1]/ims/oneroster/v1p1/users>"
    )
    up80 = UpstreamPrefix.parse("http://District.example:80/ims/oneroster/")
    assert (up80.host, up80.port, up80.path) == ("district.example", 80, "/ims/oneroster/")
    assert rewrite_link("<http://district.example/ims/oneroster/v1p1>", up80, PUB) == (
        f"<{PUB}v1p1>"
    )


def test_malformed_values_are_kept():
    for value in ("", "garbage", "<unterminated", 'rel="next"', '"<x', f"<{UP}v1p1/users"):
        assert rewrite_link(value, UP, PUB) == value


def test_upstream_prefix_helper_and_bad_prefixes():
    assert upstream_prefix("https://d.example/base/") == UpstreamPrefix(
        "https", "d.example", 443, "/base/ims/oneroster/"
    )
    for bad in ("d.example/ims/oneroster/", "https://", "https://a b/ims/oneroster/"):
        with pytest.raises(ValueError):
            UpstreamPrefix.parse(bad)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(alphabet="abcdefXYZ0123456789-._~%=&?/", max_size=40),
            st.text(alphabet='abc ,;="\\<>', max_size=20),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_rewrite_changes_only_link_targets(links):
    def render(prefix: str) -> str:
        return ", ".join(f'<{prefix}{tail}>; rel=x; t="{param}"' for tail, param in links)

    # the params are generated inside quotes but may hold unbalanced quotes/backslashes; only
    # check values whose quoting is well formed, which is what a district sends
    if any('"' in p or p.endswith("\\") for _, p in links):
        return
    assert rewrite_link(render(UP), UP, PUB) == render(PUB)


# --- response headers -------------------------------------------------------------------------


def test_response_headers_drop_hop_by_hop_and_keep_order():
    upstream = CIMultiDictProxy(
        CIMultiDict(
            [
                ("Content-Type", "application/json"),
                ("Connection", "keep-alive, X-Secret-Hop"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer-Encoding", "chunked"),
                ("X-Secret-Hop", "1"),
                ("X-Total-Count", "1234"),
                ("Link", f'<{UP}v1p1/users?offset=100>; rel="next"'),
                ("Link", f'<{UP}v1p1/users?offset=0>; rel="first"'),
                ("Content-Length", "42"),
                ("Content-Encoding", "gzip"),
                ("Proxy-Connection", "keep-alive"),
                ("Upgrade", "h2c"),
                ("Trailer", "Expires"),
                ("TE", "trailers"),
                ("Proxy-Authenticate", "Basic"),
                ("Set-Cookie", "JSESSIONID=abc"),
                ("X-Request-Id", "from-district"),
                ("Vary", "Accept"),
                ("Vary", "Accept-Encoding"),
                ("ETag", '"v1"'),
                ("WWW-Authenticate", 'OAuth realm="district"'),
            ]
        )
    )
    out = response_headers(upstream, upstream_prefix=UP, public_prefix=PUB)
    assert out == [
        ("Content-Type", "application/json"),
        ("X-Total-Count", "1234"),
        ("Link", f'<{PUB}v1p1/users?offset=100>; rel="next"'),
        ("Link", f'<{PUB}v1p1/users?offset=0>; rel="first"'),
        ("Content-Length", "42"),
        ("Content-Encoding", "gzip"),
        ("Vary", "Accept"),
        ("Vary", "Accept-Encoding"),
        ("ETag", '"v1"'),
        ("WWW-Authenticate", 'OAuth realm="district"'),
    ]


def test_response_headers_accept_plain_lists_and_prefix_objects():
    out = response_headers(
        [("link", f"<{UP}v1p1/users>; rel=next"), ("Location", f"{UP}gradebook/v1p2/lineItems/l1")],
        upstream_prefix=upstream_prefix(
            "https://springfield.example/campus/api/oneroster/v1p2/acme"
        ),
        public_prefix=PUB,
    )
    assert out == [
        ("link", f"<{PUB}v1p1/users>; rel=next"),
        ("Location", f"{PUB}gradebook/v1p2/lineItems/l1"),
    ]


def test_connection_tokens_from_several_connection_headers():
    out = response_headers(
        [("Connection", "X-A"), ("connection", " x-b ,close"), ("X-A", "1"), ("X-B", "2"),
         ("X-C", "3")],
        upstream_prefix=UP,
        public_prefix=PUB,
    )  # fmt: skip
    assert out == [("X-C", "3")]


def test_header_splitting_values_are_dropped():
    out = response_headers(
        [("X-Evil", "a\r\nSet-Cookie: x=1"), ("X-Ok", "fine"), ("X-Nul", "a\x00b")],
        upstream_prefix=UP,
        public_prefix=PUB,
    )
    assert out == [("X-Ok", "fine")]


def test_hop_by_hop_set():
    assert {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
    } == HOP_BY_HOP


# --- request headers --------------------------------------------------------------------------


def test_request_headers_forward_only_end_to_end_vendor_headers():
    inbound = CIMultiDictProxy(
        CIMultiDict(
            [
                ("Host", "proxy.example"),
                ("Authorization", "Bearer orp_abcdefghijkl_secret"),
                ("X-Vendor-Authorization", "Evil:Key"),
                ("x-vendor-authorization", "Evil:Key2"),
                ("Accept", "application/json"),
                ("Accept-Encoding", "gzip"),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Content-Length", "17"),
                ("If-None-Match", '"v1"'),
                ("Connection", "keep-alive, X-Hop"),
                ("X-Hop", "1"),
                ("TE", "trailers"),
                ("Transfer-Encoding", "chunked"),
                ("Expect", "100-continue"),
                ("Cookie", "a=b"),
                ("X-Forwarded-For", "10.0.0.1"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "x"),
                ("Forwarded", "for=10.0.0.1"),
                ("X-Real-IP", "10.0.0.1"),
                ("X-Request-Id", "abc"),
                ("Proxy-Authorization", "Basic x"),
                ("User-Agent", "vendor-sdk/1.0"),
                ("Accept", "text/csv"),
            ]
        )
    )
    assert request_headers(inbound) == [
        ("Accept", "application/json"),
        ("Accept-Encoding", "gzip"),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("If-None-Match", '"v1"'),
        ("User-Agent", "vendor-sdk/1.0"),
        ("Accept", "text/csv"),
    ]


# --- public base ------------------------------------------------------------------------------


def test_public_url_wins():
    assert public_base("http", "evil.example", "https", "x", True, "https://proxy.example/") == (
        "https://proxy.example"
    )
    assert public_prefix("https://proxy.example", "app-7") == PUB


def test_request_scheme_and_host():
    assert public_base("http", "127.0.0.1:8080", None, None, False, None) == "http://127.0.0.1:8080"
    assert public_base("https", "proxy.example", None, None, False, None) == "https://proxy.example"
    assert public_base("http", "[::1]:8080", None, None, False, None) == "http://[::1]:8080"


def test_forwarded_headers_only_when_trusted():
    args = ("http", "10.0.0.5:8080", "https", "proxy.example")
    assert public_base(*args, False, None) == "http://10.0.0.5:8080"
    assert public_base(*args, True, None) == "https://proxy.example"
    # chained balancers: the first (client-facing) value counts
    assert public_base("http", "h", "HTTPS, http", "a.example, b.internal", True, None) == (
        "https://a.example"
    )


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "evil.example/path",
        "evil.example evil",
        "evil.example\r\nX: y",
        "user@evil.example",
        "evil.example:80:80",
        "evil.example:port",
        '"evil"',
        "evil.example>; rel=next, <https://x",
        "a" * 256,
    ],
)
def test_bad_hosts_are_refused(host):
    with pytest.raises(BadRequest):
        public_base("http", host, None, None, False, None)
    # the same for a trusted X-Forwarded-Host
    if host:
        with pytest.raises(BadRequest):
            public_base("http", "ok.example", None, host, True, None)


def test_bad_forwarded_proto_is_refused():
    with pytest.raises(BadRequest):
        public_base("http", "ok.example", "javascript", None, True, None)
    assert public_base("http", "ok.example", "javascript", None, False, None) == "http://ok.example"


# The fast path of rewrite_link (plain replacement when every target is spelled canonically)
# must give exactly what the general scan gives, for any mix of targets and parameters.
from proxy.gateway.rewrite import _rewrite_scan  # noqa: E402

_FAST_UP = upstream_prefix("https://d.example/base")
_FAST_PUB = "https://proxy.example/app-7/ims/oneroster/"
_targets = st.sampled_from(
    [
        "https://d.example/base/ims/oneroster/v1p1/users?limit=5&offset=5",
        "HTTPS://D.EXAMPLE:443/base/ims/oneroster/v1p1/users",
        "https://other.example/base/ims/oneroster/v1p1/users",
        "/base/ims/oneroster/v1p2/x",
        "?offset=10",
    ]
)
_params = st.sampled_from(['; rel="next"', '; rel="last"', '; title="a<b"', '; x="\\"<"', ""])


@given(st.lists(st.tuples(_targets, _params), min_size=1, max_size=4), st.booleans())
def test_fast_path_agrees_with_the_scan(links, malformed_tail):
    value = ", ".join(f"<{t}>{p}" for t, p in links)
    if malformed_tail:
        value += ", <https://d.example/base/ims/oneroster/v1p1/tail"
    assert rewrite_link(value, _FAST_UP, _FAST_PUB) == _rewrite_scan(value, _FAST_UP, _FAST_PUB)
