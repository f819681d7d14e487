"""proxy.errors: every refusal class renders the one imsx shape with its own status and codeMinor
(docs/http-api.md, statuses; OneRoster 1.1 §3.3 / 1.2 REST binding §3.3)."""

from __future__ import annotations

import inspect
import json

import pytest
from aiohttp import web

from proxy import errors

REFUSALS = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.ProxyError) and cls is not errors.ConfigError
]


def test_the_hierarchy_is_complete() -> None:
    # Each class is drawn in the module docstring, so a reader finds it there.
    for cls in REFUSALS:
        assert cls.__name__ in (errors.__doc__ or ""), cls.__name__


@pytest.mark.parametrize("cls", REFUSALS, ids=lambda c: c.__name__)
def test_each_refusal_is_an_imsx_answer_with_its_status(cls: type[errors.ProxyError]) -> None:
    err = cls("what went wrong")
    err.retry_after = 2.5  # every class may ask the vendor to wait
    response = errors.error_response(err)
    assert response.status == cls.status
    assert response.content_type == "application/json"
    assert response.headers["Retry-After"] == "3"
    assert response.body is not None
    data = json.loads(bytes(response.body))  # type: ignore[arg-type]
    assert data["imsx_codeMajor"] == "failure"
    assert data["imsx_severity"] == "error"
    field = data["imsx_CodeMinor"]["imsx_codeMinorField"][0]
    assert field == {
        "imsx_codeMinorFieldName": "TargetEndSystem",
        "imsx_codeMinorFieldValue": cls.code_minor,
    }
    if cls in (errors.StoreUnavailable, errors.UpstreamTokenError, errors.UpstreamTokenTimeout):
        # SECURITY: the store's address and the district's token URL are an operator's
        # business, not a vendor's.
        assert "what went wrong" not in data["imsx_description"]
    else:
        assert data["imsx_description"] == "what went wrong"


def test_unauthorized_names_the_bearer_scheme() -> None:
    response = errors.error_response(errors.Unauthorized("no token"))
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_aiohttp_refusals_keep_status_and_allow_in_the_imsx_shape() -> None:
    response = errors.refusal_response(web.HTTPMethodNotAllowed("PATCH", ["GET", "POST"]))
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == {"GET", "POST"}
    data = json.loads(bytes(response.body))  # type: ignore[arg-type]
    assert data["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"] == (
        "invaliddata"
    )
    busy = errors.refusal_response(web.HTTPServiceUnavailable())
    assert (
        json.loads(bytes(busy.body))["imsx_CodeMinor"]["imsx_codeMinorField"][0][  # type: ignore[arg-type]
            "imsx_codeMinorFieldValue"
        ]
        == "server_busy"
    )
