"""The admin API for managed districts and connections (docs/commands.md).

``GET|POST /admin/districts``, ``GET|PATCH|DELETE /admin/districts/{name}``,
``POST /admin/connections``, ``PATCH|DELETE /admin/connections/{appId}`` and
``PUT /admin/connections/{appId}/credentials``. JSON in and out; the JSON fields are the keys
of ``[districts.X]`` and ``[connections.X]`` (``app_id`` and ``name`` name the record). Bad
input is 400 ``{"errors": ["<field>: <problem>", ...]}`` with every problem worded as
``config validate`` words it; an unknown name 404 and a name taken or in use 409, both as
``{"errors": [...]}`` too. Each change goes through ``proxy.connections.managed`` (one audit
event, never a secret) and is seen by this process at once, by every other within ``cache_ttl``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from proxy.admin.body import decode_object, read_body
from proxy.config import DistrictConfig, expired
from proxy.connections import managed
from proxy.connections.managed import ConfigEntries
from proxy.errors import BadRequest, ConfigError, Conflict, NotFound, ProxyError
from proxy.gateway.context import SERVICES, Services
from proxy.store.base import ConnectionRecord

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The name a POST body gave (``name``, ``app_id``): error lines are relative to it.
_NAMED = web.RequestKey("managed_name", str)


def add_routes(app: web.Application) -> None:
    """Register the routes on the admin app (it holds the ``SERVICES`` they change)."""
    app.router.add_get("/admin/districts", list_districts)
    app.router.add_post("/admin/districts", add_district)
    app.router.add_get("/admin/districts/{name}", get_district)
    app.router.add_patch("/admin/districts/{name}", update_district)
    app.router.add_delete("/admin/districts/{name}", remove_district)
    app.router.add_post("/admin/connections", add_connection)
    app.router.add_patch("/admin/connections/{app_id}", update_connection)
    app.router.add_delete("/admin/connections/{app_id}", remove_connection)
    app.router.add_put("/admin/connections/{app_id}/credentials", renew_connection)


def errors(status: int, problems: list[str]) -> web.Response:
    return web.json_response({"errors": problems}, status=status)


def answers(prefix: Callable[[web.Request], str]) -> Callable[[Handler], Handler]:
    """The one place where this API's refusals become ``{"errors": [...]}``: ConfigError is
    400 with its problems relative to the record (``scopes[1]: ...``)."""

    def wrap(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except ConfigError as err:
                return errors(400, managed.relative(err.problems, prefix(request)))
            except (NotFound, Conflict) as err:
                return errors(err.status, [err.description])
            except ProxyError as err:
                if err.status == 400:
                    return errors(400, [err.description])
                raise

        return run

    return wrap


def _district_path(request: web.Request) -> str:
    return f"districts.{request.match_info.get('name') or request.get(_NAMED, '')}"


def _connection_path(request: web.Request) -> str:
    return f"connections.{request.match_info.get('app_id') or request.get(_NAMED, '')}"


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


def _catalog(services: Services) -> ConfigEntries:
    return ConfigEntries.of(services.runtime.current.config)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        raw = await read_body(request)
    except BadRequest as err:
        raise ConfigError([err.description]) from err
    try:
        return decode_object(raw)
    except ValueError as exc:
        text = str(exc)
        raise ConfigError([text if ": " in text else f"body: {text}"]) from exc


#: A valid name that validates the rest of a body whose own name is missing.
_STAND_IN_NAME = "unnamed"


def _name(request: web.Request, body: dict[str, Any], field: str) -> str | None:
    """The body's name, or None when it is missing (``_nameless`` then lists every problem)."""
    value = body.pop(field, None)
    if not isinstance(value, str) or not value:
        return None
    request[_NAMED] = value
    return value


def _nameless(field: str, path: str, check: Callable[[str], object]) -> ConfigError:
    """SPEC "bad input: every problem": the missing name and whatever else the body lacks,
    found by checking it under a stand-in name."""
    problems = [f"{field}: required (a string)"]
    try:
        check(_STAND_IN_NAME)
    except ConfigError as err:
        problems += managed.relative(err.problems, f"{path}.{_STAND_IN_NAME}")
    return ConfigError(problems)


async def store_connection_view(
    services: Services, record: ConnectionRecord, now: datetime
) -> dict[str, Any]:
    """A store connection in the shape of ``GET /admin/connections`` (no secret is opened)."""
    runtime = services.runtime.current
    district: DistrictConfig | None = runtime.config.districts.get(record.district)
    if district is None:
        stored = await services.store.get_district(record.district)
        district = managed.district_config(stored) if stored is not None else None
    vendor = runtime.config.vendors.get(record.vendor)
    view = managed.connection_view(record)
    view.update(
        base_url=district.base_url if district else None,
        auth=district.auth if district else None,
        signature_method=district.signature_method
        if district is not None and district.auth == "oauth1"
        else None,
        expired=expired(record.expires, now),
        vendor_authorization=bool(
            district and district.vendor_authorization and vendor and vendor.vendor_authorization
        ),
        max_connections=district.max_connections if district else None,
        rate_limit=str(district.rate_limit) if district and district.rate_limit else None,
        circuit=services.circuits.state(district) if district else "closed",
    )
    return view


def _changed(services: Services, record: ConnectionRecord, *, status: int = 200) -> web.Response:
    """The answer to a change of a connection, which this process sees at once: what it has
    cached for the appId (after an add: that it is unknown) is forgotten; other processes see
    the change within ``cache_ttl``."""
    services.store_connections.forget(record.app_id)
    return web.json_response(managed.connection_view(record), status=status)


# -- districts --------------------------------------------------------------------------------


async def list_districts(request: web.Request) -> web.Response:
    services = _services(request)
    config = services.runtime.current.config
    views = [managed.district_view(d, "config") for d in config.districts.values()]
    views += [managed.district_view(d, "store") for d in await services.store.list_districts()]
    return web.json_response({"districts": sorted(views, key=lambda v: v["name"])})


@answers(_district_path)
async def add_district(request: web.Request) -> web.Response:
    services = _services(request)
    body = await _body(request)
    name = _name(request, body, "name")
    if name is None:
        raise _nameless("name", "districts", lambda n: managed.check_district(n, body))
    record = await managed.add_district(
        services.store, _catalog(services), name, body, interface="admin"
    )
    return web.json_response(managed.district_view(record, "store"), status=201)


@answers(_district_path)
async def get_district(request: web.Request) -> web.Response:
    services = _services(request)
    name = request.match_info["name"]
    in_file = services.runtime.current.config.districts.get(name)
    if in_file is not None:
        return web.json_response(managed.district_view(in_file, "config"))
    record = await services.store.get_district(name)
    if record is None:
        raise NotFound(f'no district "{name}"')
    return web.json_response(managed.district_view(record, "store"))


@answers(_district_path)
async def update_district(request: web.Request) -> web.Response:
    services = _services(request)
    name = request.match_info["name"]
    body = await _body(request)
    record = await managed.update_district(
        services.store, _catalog(services), name, body, interface="admin", box=services.secret_box()
    )
    services.store_connections.forget()  # every connection of the district
    return web.json_response(managed.district_view(record, "store"))


@answers(_district_path)
async def remove_district(request: web.Request) -> web.Response:
    services = _services(request)
    name = request.match_info["name"]
    await managed.remove_district(services.store, _catalog(services), name, interface="admin")
    return web.json_response({"name": name, "removed": True})


# -- connections ------------------------------------------------------------------------------


@answers(_connection_path)
async def add_connection(request: web.Request) -> web.Response:
    services = _services(request)
    body = await _body(request)
    app_id = _name(request, body, "app_id")
    if app_id is None:
        catalog = _catalog(services)
        district = body.get("district")
        known = isinstance(district, str) and (
            district in catalog.districts or await services.store.get_district(district) is not None
        )
        raise _nameless(
            "app_id",
            "connections",
            lambda n: managed.validated_connection(n, body, catalog.vendors, known),
        )
    record = await managed.add_connection(
        services.store,
        _catalog(services),
        services.secret_box(),
        app_id,
        body,
        interface="admin",
    )
    return _changed(services, record, status=201)


@answers(_connection_path)
async def update_connection(request: web.Request) -> web.Response:
    services = _services(request)
    app_id = request.match_info["app_id"]
    body = await _body(request)
    record = await managed.update_connection(
        services.store, _catalog(services), app_id, body, interface="admin"
    )
    return _changed(services, record)


@answers(_connection_path)
async def renew_connection(request: web.Request) -> web.Response:
    services = _services(request)
    app_id = request.match_info["app_id"]
    body = await _body(request)
    unknown = sorted(set(body) - {"key", "secret", "expires"})
    if unknown:
        raise ConfigError([f"connections.{app_id}.{k}: unknown key" for k in unknown])
    extra: dict[str, Any] = {"expires": body["expires"]} if "expires" in body else {}
    record = await managed.renew_connection(
        services.store,
        _catalog(services),
        services.secret_box(),
        app_id,
        body.get("key"),
        body.get("secret"),
        interface="admin",
        **extra,
    )
    return _changed(services, record)


@answers(_connection_path)
async def remove_connection(request: web.Request) -> web.Response:
    services = _services(request)
    app_id = request.match_info["app_id"]
    await managed.remove_connection(services.store, _catalog(services), app_id, interface="admin")
    services.store_connections.forget(app_id)
    return web.json_response({"appId": app_id, "removed": True})
