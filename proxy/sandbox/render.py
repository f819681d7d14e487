"""The sandbox's records as OneRoster 1.1 and 1.2 JSON: version keys, GUIDRefs and their hrefs.

Records are built once in a version-neutral form (``proxy.sandbox.data``) and rendered per
version (OneRoster 1.1 JSON binding, OneRoster 1.2 REST/JSON binding): a key written
``"v11:name"`` exists only in 1.1, a ``"v12:name"`` only in 1.2; booleans listed in
``_BOOL_STRINGS`` become the strings ``"true"``/``"false"`` that both bindings use; ``Ref``
values become GUIDRefs with an ``href`` under the district's base path. That ``href`` is stored
as a path (``<base path>/ims/oneroster/...``) because the district's scheme and host are known
only per request; the server makes it an absolute URI when it writes a response (see
``HrefAbsolutizer``).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

V1P1 = "v1p1"
V1P2 = "v1p2"
VERSIONS = (V1P1, V1P2)

#: Storage collections: every endpoint reads one of these (``schools`` reads ``orgs``, ...).
STORES = (
    "orgs",
    "academicSessions",
    "courses",
    "classes",
    "enrollments",
    "users",
    "demographics",
    "categories",
    "lineItems",
    "results",
    "scoreScales",
    "assessmentLineItems",
    "assessmentResults",
    "resources",
)

#: The OneRoster service that owns each storage collection (1.2 URL paths, ``href``s).
SERVICE_OF_STORE = {
    "orgs": "rostering",
    "academicSessions": "rostering",
    "courses": "rostering",
    "classes": "rostering",
    "enrollments": "rostering",
    "users": "rostering",
    "demographics": "rostering",
    "categories": "gradebook",
    "lineItems": "gradebook",
    "results": "gradebook",
    "scoreScales": "gradebook",
    "assessmentLineItems": "gradebook",
    "assessmentResults": "gradebook",
    "resources": "resources",
}

#: Collections that exist only in OneRoster 1.2.
V1P2_ONLY_STORES = frozenset({"scoreScales", "assessmentLineItems", "assessmentResults"})

_STORE_OF_REF_TYPE = {
    "org": "orgs",
    "academicSession": "academicSessions",
    "course": "courses",
    "class": "classes",
    "user": "users",
    "enrollment": "enrollments",
    "category": "categories",
    "lineItem": "lineItems",
    "result": "results",
    "scoreScale": "scoreScales",
    "assessmentLineItem": "assessmentLineItems",
    "resource": "resources",
}

# Both JSON bindings carry these booleans as "true"/"false" strings: 1.1 by its binding, 1.2 by
# its OpenAPI (UserDType.enabledUser, EnrollmentDType.primary, DemographicsDType.* are
# "type": "string", "enum": ["true", "false"]).
_BOOL_STRINGS = frozenset(
    {
        "enabledUser",
        "primary",
        "americanIndianOrAlaskaNative",
        "asian",
        "blackOrAfricanAmerican",
        "nativeHawaiianOrOtherPacificIslander",
        "white",
        "demographicRaceTwoOrMoreRaces",
        "hispanicOrLatinoEthnicity",
    }
)


class Ref(NamedTuple):
    """A reference to another record; rendered as a OneRoster GUIDRef."""

    type: str
    sourced_id: str


def api_prefix(version: str, store: str) -> str:
    """The path segment(s) after ``/ims/oneroster/`` for ``store`` in ``version``."""
    if version == V1P1:
        return V1P1
    return f"{SERVICE_OF_STORE[store]}/{V1P2}"


def ref_dict(ref: Ref, version: str, base_path: str) -> dict[str, str]:
    """The GUIDRef for ``ref``; its ``href`` is a path that ``HrefAbsolutizer`` makes absolute."""
    store = _STORE_OF_REF_TYPE[ref.type]
    return {
        "href": f"{base_path}/ims/oneroster/{api_prefix(version, store)}/{store}/{ref.sourced_id}",
        "sourcedId": ref.sourced_id,
        "type": ref.type,
    }


class HrefAbsolutizer:
    """Turns the stored ``href`` paths of a serialized answer into absolute URIs.

    GUIDRef ``href`` is ``format: uri`` in the OneRoster 1.2 OpenAPI, and real districts send
    ``https://host/<base path>/ims/oneroster/...``. Records keep the path form (generated once per
    seed, cached, shared by districts on any port); this rewrites the compact JSON that
    ``json.dumps(..., separators=(",", ":"))`` writes, so an answer costs one ``bytes.replace``.
    Only a JSON key can produce the needle: inside a string value every quote is escaped.
    """

    def __init__(self, base_path: str) -> None:
        self._needle = self._key_and_start(base_path + "/ims/oneroster/")
        self._base_path = base_path

    @staticmethod
    def _key_and_start(prefix: str) -> bytes:
        # The key, the colon and the opening quote and escaped text of the value, without its
        # closing quote: exactly the bytes the serializer writes before the rest of the path.
        value = json.dumps(prefix, ensure_ascii=False)[:-1]
        return ('"href":' + value).encode()

    def replacement(self, origin: str) -> bytes:
        """The bytes that replace the needle for a district reached at ``origin``."""
        # SECURITY: origin comes from the request's Host header; json.dumps escapes it, so a
        # crafted Host cannot end the string and inject JSON into the answer.
        return self._key_and_start(f"{origin}{self._base_path}/ims/oneroster/")

    def apply(self, body: bytes, replacement: bytes) -> bytes:
        return body.replace(self._needle, replacement)


def render(value: Any, version: str, base_path: str) -> Any:
    """Turn a version-neutral value into its JSON form for ``version``."""
    if isinstance(value, Ref):
        return ref_dict(value, version, base_path)
    if isinstance(value, list):
        return [render(item, version, base_path) for item in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        mine, other = ("v11:", "v12:") if version == V1P1 else ("v12:", "v11:")
        for key, item in value.items():
            if key.startswith(other):
                continue
            if key.startswith(mine):
                key = key[len(mine) :]
            item = render(item, version, base_path)
            if key in _BOOL_STRINGS and isinstance(item, bool):
                item = "true" if item else "false"
            out[key] = item
        return out
    return value
