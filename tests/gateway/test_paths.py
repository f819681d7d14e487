"""proxy.gateway.paths: traversal refusal (docs/http-api.md, 400 before any upstream request),
with a hypothesis property over generated hostile paths (RFC 3986 §5.2.4 dot-segments in every
encoding)."""

from __future__ import annotations

import posixpath
import re
import unicodedata
from urllib.parse import unquote, unquote_to_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.errors import PathRefused
from proxy.gateway import paths
from proxy.gateway.paths import Target, needs_reencoding, parse_target
from proxy.scopes import classify

PREFIX = "/app-7/ims/oneroster/"

HOSTILE_RESTS = [
    "..",
    "v1p1/..",
    "v1p1/../../admin",
    "v1p1/users/../demographics",
    ".",
    "./v1p1/users",
    "v1p1/./users",
    "%2e%2e/x",
    "v1p1/%2e%2e/%2e%2e/x",
    "v1p1/%2E%2e/",
    "v1p1/.%2e/x",
    "v1p1/%2e./x",
    "v1p1/%2e",
    "v1p1/users%2f..%2f..%2fx",
    "v1p1/users%2Fx",
    "v1p1/users%5c..%5cx",
    "v1p1/users%5Cx",
    "v1p1\\..\\x",
    "v1p1/users\\x",
    "v1p1//users",
    "//v1p1/users",
    "v1p1/users//",
    "v1p1/users/%00",
    "v1p1/users/a%00b",
    "v1p1/users/a%0ab",
    "v1p1/users/a%0d%0aX-Injected:%201",
    "v1p1/users/a%09b",
    "v1p1/users/a%7fb",
    "v1p1/users/a\nb",
    "v1p1/users/a\rb",
    "v1p1/users/a\x00b",
    "v1p1/users/a b",  # raw space: not a valid request-target
    'v1p1/users/a"b',
    "v1p1/users/<x>",
    "v1p1/users/a|b",
    "v1p1/users/a{b}",
    "v1p1/users/a^b",
    "v1p1/users/a`b",
    "v1p1/users/é",  # raw non-ASCII
    "v1p1/users/%",
    "v1p1/users/%2",
    "v1p1/users/%zz",
    "v1p1/users/%ff",  # not UTF-8
    "v1p1/users/%c0%ae%c0%ae",  # overlong UTF-8 dots
    "v1p1/users/%e2%80%ae",  # RIGHT-TO-LEFT OVERRIDE (format character)
    "v1p1/users/a%e2%80%a8b",  # LINE SEPARATOR
    "v1p1/users/%ef%bc%8f",  # FULLWIDTH SOLIDUS: NFKC -> "/"
    "v1p1/users/%ef%bc%8e%ef%bc%8e",  # FULLWIDTH FULL STOPs: NFKC -> ".."
    "v1p1/users/%e2%80%a5",  # TWO DOT LEADER: NFKC -> ".."
    "v1p1/users/%252e%252e",  # double encoding
    "v1p1/%252e%252e/%252e%252e/x",
    "v1p1/users/%25252e%25252e",  # triple encoding
    "v1p1/users/%25%32%65%25%32%65",  # %2e%2e after one decoding
    "v1p1/users/%252f",
    "v1p1/users/%255c",
    "v1p1/users/%2500",
    "v1p1/users/%253f",
    "v1p1/users/%2525252525",  # five levels of escapes
    "v1p1/users/..;/demographics",  # Tomcat path parameters
    "v1p1/users/..;jsessionid=1/x",
    "v1p1/users/.;x/y",
    "v1p1/users/;x",
    "v1p1/users/%3bx",
    "v1p1/users/..%3b/x",
    "v1p1/users/...",  # Windows trims trailing dots
    "v1p1/users/..%20",
    "v1p1/users/.%20.",
    "v1p1/users/..+",
    "v1p1/users/+",
    "v1p1/users/a%3fb",  # "?" after decoding
    "v1p1/users/a%23b",  # "#" after decoding
    "v1p1/users/a?b",
    "v1p1/users/a#b",
]

NORMAL = [
    ("v1p1/users", "v1p1/users"),
    ("v1p1/users/", "v1p1/users/"),
    ("", ""),
    ("v1p1/users/abc-123_x.y~z", "v1p1/users/abc-123_x.y~z"),
    ("v1p1/users/a.b", "v1p1/users/a.b"),
    ("v1p1/users/.hidden", "v1p1/users/.hidden"),
    ("v1p1/users/a..b", "v1p1/users/a..b"),
    ("v1p1/users/a%20b", "v1p1/users/a b"),
    ("v1p1/users/%C3%A9l%C3%A8ve", "v1p1/users/élève"),
    ("v1p1/users/%e5%ad%a6%e7%94%9f", "v1p1/users/学生"),
    ("v1p1/users/urn:uuid:1234", "v1p1/users/urn:uuid:1234"),
    ("v1p1/users/a@b", "v1p1/users/a@b"),
    ("v1p1/users/a+b", "v1p1/users/a+b"),
    ("v1p1/users/a=b&c,d!$'()*", "v1p1/users/a=b&c,d!$'()*"),
    ("v1p1/users/a;b", "v1p1/users/a;b"),
    ("v1p1/users/50%25off", "v1p1/users/50%off"),
    ("v1p1/%75sers", "v1p1/users"),
    (
        "rostering/v1p2/schools/s-1/classes/c-1/students",
        "rostering/v1p2/schools/s-1/classes/c-1/students",
    ),
    ("gradebook/v1p2/classes/c1/lineItems", "gradebook/v1p2/classes/c1/lineItems"),
    (
        "InfiniteCampus_x/v1p1/users/2d7b6e39-7d0c-4a1b-9b5e-1f2e3d4c5b6a",
        "InfiniteCampus_x/v1p1/users/2d7b6e39-7d0c-4a1b-9b5e-1f2e3d4c5b6a",
    ),
]


@pytest.mark.parametrize("rest", HOSTILE_RESTS)
def test_hostile_paths_are_refused(rest):
    with pytest.raises(PathRefused) as info:
        parse_target(PREFIX + rest)
    assert info.value.status == 400


@pytest.mark.parametrize(("raw", "decoded"), NORMAL)
def test_normal_paths_parse(raw, decoded):
    target = parse_target(PREFIX + raw)
    assert target == Target("app-7", decoded, raw)
    assert not needs_reencoding(target.raw_rest)


@pytest.mark.parametrize(
    "raw_path",
    [
        "",
        "app/ims/oneroster/v1p1/users",
        "/",
        "//ims/oneroster/v1p1/users",
        "/app-7",
        "/app-7/",
        "/app-7/ims/oneroster",
        "/app-7/ims/oneroster2/v1p1",
        "/app-7/IMS/oneroster/v1p1/users",
        "/app-7/ims/%6Fneroster/v1p1/users",
        "/app-7/ims//oneroster/v1p1/users",
        "/app-7/x/../ims/oneroster/v1p1/users",
        "/../ims/oneroster/v1p1/users",
        "/./ims/oneroster/v1p1/users",
        "/.../ims/oneroster/v1p1/users",
        "/app%2d7/ims/oneroster/v1p1/users",
        "/app 7/ims/oneroster/v1p1/users",
        "/app/7/ims/oneroster/v1p1/users",
        "/" + "a" * 129 + "/ims/oneroster/v1p1/users",
        "/app-7/ims/oneroster/v1p1/users?limit=1",  # the query must be split off by the caller
    ],
)
def test_malformed_gateway_paths_are_refused(raw_path):
    with pytest.raises(PathRefused):
        parse_target(raw_path)


def test_app_id_alphabet():
    # The one name rule of proxy.names, shared with config validation.
    for app_id in ("a", "A.b_c-d", "x" * 64, "app-7", "0"):
        assert parse_target(f"/{app_id}/ims/oneroster/v1p1/users").app_id == app_id
    for app_id in ("x" * 65, "a~b", ".a", "-a", "_a", "..", "."):
        with pytest.raises(PathRefused):
            parse_target(f"/{app_id}/ims/oneroster/v1p1/users")


# --- properties -------------------------------------------------------------------------------

PIECES = [
    "users", "v1p1", "a", "é", "%C3%A9", "-", "~", "_", ".", "..", "%2e", "%2E", "%2f", "%2F",
    "%5c", "%5C", "\\", "%25", "%252e", "%32", "%65", "2e", "%", ";", "%3b", "%3B", "%00", "%0a",
    "%0d", "+", "%20", " ", "%c0%ae", "%ef%bc%8f", "%ef%bc%8e", "%e2%80%a5", "?", "%3f", "#",
    ":", "@", "%40", "|", "%7c", "%ff", "\x00", "\n",
]  # fmt: skip

DOTS = [".", "..", "%2e", "%2E", "%252e", ";", "+", "%20", "%ef%bc%8e"]
segments = st.one_of(
    st.sampled_from(PIECES),  # a whole segment "..", "%2e", ";" ... on its own
    st.lists(st.sampled_from(DOTS), min_size=1, max_size=3).map("".join),  # ".%2e", "..;" ...
    st.lists(st.sampled_from(PIECES), min_size=0, max_size=5).map("".join),
)
raw_rests = st.lists(segments, min_size=0, max_size=6).map("/".join)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, written out independently of proxy.gateway.paths."""
    out: list[str] = []
    inp = path
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./"):
            inp = inp[2:]
        elif inp.startswith("/./"):
            inp = "/" + inp[3:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = "/" + inp[4:]
            if out:
                out.pop()
        elif inp == "/..":
            inp = "/"
            if out:
                out.pop()
        elif inp in (".", ".."):
            inp = ""
        else:
            start = 1 if inp.startswith("/") else 0
            end = inp.find("/", start)
            if end < 0:
                end = len(inp)
            out.append(inp[:end])
            inp = inp[end:]
    return "".join(out)


def readings(raw_rest: str) -> list[str]:
    """The ways a district's stack might read ``/ims/oneroster/<raw_rest>``."""
    full = "/ims/oneroster/" + raw_rest
    once = unquote(full, errors="surrogateescape")
    twice = unquote(once, errors="surrogateescape")
    fixpoint = full
    for _ in range(6):
        fixpoint = unquote(fixpoint, errors="surrogateescape")
    no_params = "/".join(seg.split(";", 1)[0] for seg in full.split("/"))
    latin = unquote_to_bytes(full).decode("latin-1")
    candidates = [full, once, twice, fixpoint, unquote(no_params), latin]
    candidates += [unicodedata.normalize("NFKC", c) for c in (once, twice)]
    candidates += [c.replace("+", " ") for c in (once, twice)]
    out = []
    for c in candidates:
        c = c.replace("\\", "/")
        c = re.sub(r"/{2,}", "/", c)  # servers that collapse empty segments
        c = c.split("?", 1)[0].split("#", 1)[0]
        out.append(c)
        # Windows trims trailing dots and spaces: read any dots-and-spaces segment as "..".
        out.append("/".join(".." if s and s.strip(" .") == "" else s for s in c.split("/")))
    return out


def inside(path: str) -> bool:
    normalised = remove_dot_segments(path)
    posix = posixpath.normpath(path)
    return (normalised.startswith("/ims/oneroster/") or normalised == "/ims/oneroster") and (
        posix.startswith("/ims/oneroster/") or posix == "/ims/oneroster"
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_rests)
def test_accepted_paths_stay_inside_under_every_reading(raw_rest):
    try:
        target = parse_target(PREFIX + raw_rest)
    except PathRefused:
        return
    assert target.raw_rest == raw_rest
    assert not needs_reencoding(raw_rest)
    for reading in readings(raw_rest):
        assert inside(reading), (raw_rest, reading)
        # no reading makes a control character appear (header/log splitting downstream)
        assert not re.search(r"[\x00-\x1f\x7f]", reading), (raw_rest, reading)


TEMPLATES = [
    "v1p1/users/{}",
    "v1p1/classes/{}/students",
    "v1p1/classes/{}/lineItems/{}/results",
    "rostering/v1p2/schools/{}/classes/{}/students",
    "gradebook/v1p2/classes/{}/academicSessions/{}/results",
    "resources/v1p2/users/{}/resources",
    "rostering/v1p2/demographics/{}",
    "v1p1/nope/{}",
]
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
ids = st.text(alphabet=UNRESERVED, min_size=1, max_size=12).filter(lambda s: s.strip(".") != "")


@st.composite
def re_encoded(draw, path: str) -> str:
    """``path`` with a random subset of its characters percent-encoded, random hex case."""
    out = []
    for ch in path:
        if ch != "/" and draw(st.booleans()):
            escape = f"%{ord(ch):02X}"
            out.append(escape if draw(st.booleans()) else escape.lower())
        else:
            out.append(ch)
    return "".join(out)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.sampled_from(TEMPLATES), ids, ids, st.sampled_from(["GET", "PUT", "DELETE"]))
def test_scope_decision_is_the_same_for_every_encoding(data, template, id1, id2, method):
    plain = template.replace("{}", id1, 1).replace("{}", id2, 1)
    encoded = data.draw(re_encoded(plain))
    a = parse_target(PREFIX + plain)
    b = parse_target(PREFIX + encoded)
    assert a.rest == b.rest == plain
    assert b.raw_rest == encoded  # forwarded as received, not re-encoded
    assert classify(a.rest, method) == classify(b.rest, method)


@settings(max_examples=300, deadline=None)
@given(raw_rests)
def test_fast_path_agrees_with_full_check(raw_rest):
    # check_rest skips decoding for paths without "%" or ";"; the full per-segment check must
    # reach the same verdict on them.
    def verdict(fn):
        try:
            return fn(raw_rest)
        except PathRefused:
            return PathRefused

    slow_re = re.compile(r"(?!)")  # never matches: forces the full check
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "_FAST_REST", slow_re)
        slow = verdict(paths.check_rest)
    assert verdict(paths.check_rest) == slow
