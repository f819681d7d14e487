"""The sandbox district's handlers: one dispatch from the path to the answer.

docs/sandbox.md. A request flows top to bottom:

    base path  ->  /oauth2/token | /ims/oneroster/...  ->  authenticate (401)
        ->  endpoint (404/405)  ->  scope (403)  ->  Infinite Campus vendor header (401)
        ->  list / get / put / delete / post

A synthetic district's ``users`` are generated and written chunk by chunk (``_stream_synthetic``),
so memory stays flat whatever the page size.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from proxy.sandbox.auth import AuthError, TokenRequestError, token_response
from proxy.sandbox.data import synthetic_index, synthetic_user
from proxy.sandbox.district import District, DistrictError
from proxy.sandbox.endpoints import COLLECTIONS, Match, is_gradebook_path, match, required_scopes
from proxy.sandbox.middleware import apply_connection_faults, reset_connection, write_chunks
from proxy.sandbox.query import Query, compile_filter, link_header, parse_query
from proxy.sandbox.render import Ref, ref_dict
from proxy.sandbox.state import (
    ALSO,
    CONTEXT,
    DISTRICT,
    FAULTS,
    HREFS,
    JSON,
    OPTIONS,
    TOKENS,
    VERIFIER,
    dumps,
    imsx_response,
)


def _href_replacement(request: web.Request) -> bytes:
    """What the stored ``href`` paths become in answers to ``request`` (see HrefAbsolutizer)."""
    # The origin the client reached, as the Link header names it: through the proxy that is this
    # district's own host, the way a real district's hrefs name the real district.
    return request.app[HREFS].replacement(f"{request.scheme}://{request.host}")


def _records_body(request: web.Request, payload: Any) -> bytes:
    """``payload`` serialized, GUIDRef hrefs made absolute URIs (``format: uri`` in 1.2)."""
    return request.app[HREFS].apply(dumps(payload), _href_replacement(request))


async def dispatch(request: web.Request) -> web.StreamResponse:
    options = request.app[OPTIONS]
    raw_path, _, raw_query = request.raw_path.partition("?")
    base = options.base_path or ""
    if not raw_path.startswith(base + "/"):
        raise DistrictError(404, "unknownobject", "Not found.")
    rest = raw_path[len(base) :]
    if rest == "/oauth2/token" and options.auth == "oauth2":
        return await _token_endpoint(request)
    prefix = "/ims/oneroster/"
    if not rest.startswith(prefix):
        raise DistrictError(404, "unknownobject", "Not found.")
    segments = [urllib.parse.unquote(s) for s in rest[len(prefix) :].split("/")]
    if len(segments) > 1 and segments[-1] == "":
        segments.pop()  # tolerate one trailing slash, as most districts do

    context = request[CONTEXT]
    context.scopes = await _authenticate(request)
    context.entry.verified = True

    _, found = match(segments)
    # A version the district does not serve is as unknown as a misspelt endpoint: the 404 a
    # client meets there is what tells it to try the other version.
    if found is None or found.version not in options.versions:
        raise DistrictError(404, "unknownobject", f"Unknown endpoint {rest!r}.")
    endpoint = found.endpoint
    # HEAD is GET without the body (RFC 9110 §9.3.2); aiohttp leaves the body out itself.
    method = "GET" if request.method == "HEAD" else request.method
    action = endpoint.action(method)
    if action is None:
        response = imsx_response(
            405, "invaliddata", f"{request.method} is not allowed on {endpoint.name}.",
            {"Allow": ", ".join(endpoint.allowed)},
        )  # fmt: skip
        return response
    needed = required_scopes(endpoint, method)
    if not needed & context.scopes:
        raise DistrictError(
            403, "forbidden",
            f"This application is not granted {' or '.join(sorted(needed)) or 'this request'}.",
        )  # fmt: skip
    vendor_auth = options.vendor_authorization
    if vendor_auth is not None and is_gradebook_path(segments):
        # SECURITY: Infinite Campus releases gradebook data only to the vendor named in the header.
        sent = request.headers.get("x-vendor-authorization", "")
        if not hmac.compare_digest(sent.encode(), vendor_auth.encode()):
            raise AuthError(
                "Gradebook endpoints require the header x-vendor-authorization: "
                "<vendorKey>:<vendorSecret> (Infinite Campus vendor authorization missing "
                "or wrong).",
                challenge='OAuth realm="gradebook"',
            )
    if action == "list":
        return await _list(request, found, raw_path, raw_query)
    if action == "get":
        return await _get(request, found)
    if action == "put":
        return await _put(request, found)
    if action == "delete":
        request.app[DISTRICT].delete(found.version, endpoint.result, found.ids[0])
        return web.Response(status=204)
    return await _post(request, found)


async def _authenticate(request: web.Request) -> frozenset[str]:
    """The scopes this request may use; ``AuthError`` if it is not authenticated."""
    options = request.app[OPTIONS]
    if options.auth == "oauth2":
        authorization = request.headers.get("Authorization", "")
        if authorization[:7].lower() != "bearer ":
            raise AuthError("A Bearer access token is required.", challenge="Bearer")
        entry = request.app[TOKENS].lookup(
            authorization[7:].strip(), request.app[FAULTS].expire_tokens_after
        )
        return entry.scopes & options.granted_scopes
    request.app[VERIFIER].verify(
        method=request.method,
        scheme=request.scheme,
        host=request.host,
        raw_target=request.raw_path,
        headers=dict(request.headers),
        body=request[CONTEXT].entry.body,
    )
    return options.granted_scopes


async def _token_endpoint(request: web.Request) -> web.Response:
    if request.method != "POST":
        return web.json_response(
            {"error": "invalid_request", "error_description": "Use POST."},
            status=405, headers={"Allow": "POST"},
        )  # fmt: skip
    body = request[CONTEXT].entry.body.decode("utf-8", "replace")
    form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    try:
        payload = token_response(
            request.app[OPTIONS],
            request.app[TOKENS],
            request.headers.get("Authorization"),
            form,
            also=request.app[ALSO],
        )
    except TokenRequestError as exc:
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="sandbox"'
        return web.json_response(
            {"error": exc.error, "error_description": exc.description},
            status=exc.status, headers=headers,
        )  # fmt: skip
    request[CONTEXT].entry.verified = True
    return web.json_response(payload, headers=headers)


def _page_headers(
    request: web.Request, raw_path: str, raw_query: str, total: int, query: Query
) -> dict[str, str]:
    base_url = f"{request.scheme}://{request.host}{raw_path}"
    return {
        "X-Total-Count": str(total),
        "Link": link_header(base_url, raw_query, total, query.limit, query.offset),
    }


async def _list(
    request: web.Request, found: Match, raw_path: str, raw_query: str
) -> web.StreamResponse:
    district = request.app[DISTRICT]
    options = request.app[OPTIONS]
    endpoint = found.endpoint
    query = parse_query(request.query)
    if options.synthetic_users and endpoint.pattern == ("users",):
        return await _stream_synthetic(request, found, query, raw_path, raw_query)
    if endpoint.kind == "collection":
        records = district.records(found.version, endpoint.result)
    else:
        records = district.relation(found.version, endpoint.name, found.ids)
    query.validate_fields(district.known_fields(found.version, endpoint.result))
    selected = query.apply(records)
    page = selected[query.offset : query.offset + query.limit]
    wrapper = COLLECTIONS[endpoint.result][1]
    return web.Response(
        body=_records_body(request, {wrapper: [query.select(r) for r in page]}),
        content_type=JSON,
        headers=_page_headers(request, raw_path, raw_query, len(selected), query),
    )


async def _get(request: web.Request, found: Match) -> web.Response:
    district = request.app[DISTRICT]
    options = request.app[OPTIONS]
    endpoint = found.endpoint
    query = parse_query(request.query)
    if options.synthetic_users and endpoint.pattern[0] == "users":
        index = synthetic_index(found.ids[0], options.synthetic_users)
        if index is None:
            raise DistrictError(404, "unknownobject", f"user {found.ids[0]!r} not found.")
        record = synthetic_user(
            index, found.version, _synthetic_org(district, found.version), options.synthetic_padding
        )
        query.validate_fields(record)
    else:
        record = district.get(found.version, endpoint.result, found.ids[0])
        query.validate_fields(district.known_fields(found.version, endpoint.result))
    return web.Response(
        body=_records_body(request, {COLLECTIONS[endpoint.result][2]: query.select(record)}),
        content_type=JSON,
    )


async def _json_body(request: web.Request) -> Any:
    raw = request[CONTEXT].entry.body
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise DistrictError(400, "invaliddata", "The request body is not JSON.") from None


async def _put(request: web.Request, found: Match) -> web.Response:
    district = request.app[DISTRICT]
    singular = COLLECTIONS[found.endpoint.result][2]
    payload = await _json_body(request)
    if not isinstance(payload, dict) or not isinstance(payload.get(singular), dict):
        raise DistrictError(400, "invaliddata", f'The body must be {{"{singular}": {{...}}}}.')
    record, created = district.put(
        found.version, found.endpoint.result, found.ids[0], payload[singular]
    )
    return web.Response(
        status=201 if created else 200,
        body=_records_body(request, {singular: record}),
        content_type=JSON,
    )


async def _post(request: web.Request, found: Match) -> web.Response:
    district = request.app[DISTRICT]
    plural = COLLECTIONS[found.endpoint.result][1]
    payload = await _json_body(request)
    items = payload.get(plural) if isinstance(payload, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise DistrictError(400, "invaliddata", f'The body must be {{"{plural}": [{{...}}, ...]}}.')
    pairs = district.post(found.version, found.endpoint.name, found.ids, items)
    return web.Response(status=201, body=dumps({"sourcedIdPairs": pairs}), content_type=JSON)


# ---------------------------------------------------------------------------------------------
# Synthetic users: a huge page, generated and written chunk by chunk.


def _synthetic_org(district: District, version: str) -> dict[str, str]:
    schools = district.records(version, "schools")
    return ref_dict(Ref("org", schools[-1]["sourcedId"]), version, district.options.base_path or "")


async def _stream_synthetic(
    request: web.Request, found: Match, query: Query, raw_path: str, raw_query: str
) -> web.StreamResponse:
    """``users`` of a synthetic district: memory stays flat whatever ``limit`` asks for.

    ``filter`` and ``fields`` apply; records come in ``sourcedId`` order (``sort`` other than
    ``sourcedId`` is ignored here, as generating and sorting millions of users would not be).
    """
    options = request.app[OPTIONS]
    district = request.app[DISTRICT]
    count = options.synthetic_users
    org = _synthetic_org(district, found.version)
    hrefs, replacement = request.app[HREFS], _href_replacement(request)
    sample = synthetic_user(0, found.version, org, options.synthetic_padding)
    query.validate_fields(sample)
    test = compile_filter(query.filter) if query.filter is not None else None
    descending = query.sort == "sourcedId" and query.descending

    # Without a filter the first ``offset`` records are skipped by index, not generated: a
    # walk of every page would otherwise cost the district the square of the collection.
    start = query.offset if test is None else 0

    def indices() -> Iterator[int]:
        if descending:
            return iter(range(count - 1 - start, -1, -1))
        return iter(range(start, count))

    def make(index: int) -> dict[str, Any]:
        return synthetic_user(index, found.version, org, options.synthetic_padding)

    if test is None:
        total = count
    else:
        total = sum(1 for i in range(count) if test(make(i)))

    def chunks() -> Iterator[bytes]:
        buffer = bytearray(b'{"users":[')
        skipped, written = start, 0
        for index in indices():
            if written >= query.limit:
                break
            record = make(index)
            if test is not None and not test(record):
                continue
            if skipped < query.offset:
                skipped += 1
                continue
            if written:
                buffer += b","
            # Per record, so a needle never straddles two chunks.
            buffer += hrefs.apply(dumps(query.select(record)), replacement)
            written += 1
            if len(buffer) >= 65536:
                yield bytes(buffer)
                buffer.clear()
        buffer += b"]}"
        yield bytes(buffer)

    stream = web.StreamResponse(headers=_page_headers(request, raw_path, raw_query, total, query))
    stream.content_type = JSON
    apply_connection_faults(request, stream)
    faults = request.app[FAULTS]
    reset = faults.reset_mid_body and faults.take("reset_mid_body")
    await stream.prepare(request)
    if reset:
        first = next(chunks())
        await stream.write(first[: max(1, len(first) // 2)])
        await asyncio.sleep(0.05)
        reset_connection(request)
        return stream
    await write_chunks(request, stream, chunks())
    await stream.write_eof()
    return stream
