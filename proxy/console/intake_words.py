"""What the intake page says, written for district IT (docs/http-api.md "District intake").

The checklist's own details are for the operator: they name config keys, the vendor's
settings and whatever the district's server sent. District IT sees instead, per item, a line
saying what it means for them and what to change in their SIS; an item only the vendor or the
operator can fix says "the vendor has to finish its setup". The only bytes of the far end ever
shown are a OneRoster ``imsx_description`` (at most 200 characters; THREAT_MODEL.md "The intake
link").
"""

from __future__ import annotations

import re

from proxy.check.report import Item
from proxy.scopes import SCOPE_ORDER

#: One plain-language line per scope, beside its checkbox.
SCOPE_LINES: dict[str, str] = {
    "roster-core.readonly": "Schools, classes, courses, people and their enrollments.",
    "roster.readonly": "The whole roster, including who belongs to which school and class.",
    "roster-demographics.readonly": "Demographics: birth dates, sex, race and ethnicity.",
    "resource.readonly": "Learning resources linked to courses and classes.",
    "gradebook.readonly": "Read the gradebook: assignments, categories and scores.",
    "gradebook.createput": "Write to the gradebook: add and update assignments and scores.",
    "gradebook.delete": "Delete assignments and scores from the gradebook.",
}
assert set(SCOPE_LINES) == set(SCOPE_ORDER)

VENDOR_SETUP = "The vendor has to finish its setup; nothing to change on your side."
#: Items whose failure only the vendor or the operator can fix.
VENDOR_ITEMS = frozenset({"connection_enabled", "not_expired"})
MAX_DESCRIPTION = 200
# probes.Probe.says(): 'GET <path> answered <status> ("<imsx_description>")'
_IMSX = re.compile(r'answered \d{3} \("(.+?)"\)')

#: The visible title of each item (``data-item`` keeps the checklist's name for machines).
TITLES = {
    "connection_enabled": "Vendor's connection",
    "not_expired": "End date",
    "district_reachable": "Server reachable",
    "token_endpoint": "Token endpoint",
    "credentials_accepted": "Key and Secret",
    "data_shared": "Data to Share",
    "students_visible": "Students visible",
    "vendor_authorization": "Grade sync",
    "infinite_campus_key": "Infinite Campus key",
}

_OK = {
    "connection_enabled": "The vendor's side of the connection is ready.",
    "not_expired": "The connection has no end date on the vendor's side.",
    "district_reachable": "Your OneRoster server answered at the Base URL.",
    "token_endpoint": "Your token endpoint issued a token for the Key and Secret.",
    "credentials_accepted": "Your server accepted the Key and Secret.",
    "data_shared": "Your server shares the data ticked under Data to Share.",
    "students_visible": "Students are visible.",
    "infinite_campus_key": "The key was made in Infinite Campus for this vendor.",
}
_SKIP = {
    "token_endpoint": "OAuth 1.0a: no token endpoint is used.",
    "students_visible": "Not checked: no roster data is ticked, or an item above failed.",
    "vendor_authorization": "Grade sync is verified once the operator checks the connection.",
    "infinite_campus_key": "Not an Infinite Campus key: nothing to compare.",
}
_FAIL = {
    "district_reachable": (
        "No OneRoster server answered at the Base URL. Use the address your SIS shows for "
        "OneRoster (everything before /ims/oneroster), reachable from the internet over "
        "https with a valid certificate."
    ),
    "token_endpoint": (
        "Your token endpoint did not issue a token. Check the Token URL, and copy the Key and "
        "Secret again from this vendor's OneRoster connection in your SIS."
    ),
    "credentials_accepted": (
        "Your server refused the Key and Secret. Copy them again from this vendor's OneRoster "
        'connection in your SIS; OneRoster 1.1 credentials expire after a year ("Renew '
        'Secret" in the SIS makes new ones).'
    ),
    "data_shared": (
        "Your server refuses some of the data ticked under Data to Share. Share it with this "
        "vendor in your SIS, or untick it here."
    ),
    "students_visible": (
        "No student is visible. Share students with this vendor's connection in your SIS."
    ),
    "infinite_campus_key": (
        "This key was made in Infinite Campus for another vendor. Use the key of this "
        "vendor's OneRoster connection in Campus."
    ),
}
#: Items whose failure district IT can fix (a failure of any other item is the vendor's).
DISTRICT_ITEMS = frozenset(_FAIL)
_NO_VERSION = (
    "No OneRoster API of the versions ticked answered under the Base URL. Tick the OneRoster "
    "version(s) your SIS serves, and check the Base URL."
)
_IC_STUDENTS = (
    " On Infinite Campus with OneRoster 1.1, students and parents are visible only once they "
    "have user accounts in Campus."
)


def is_vendors(item: Item) -> bool:
    """A failure that district IT cannot fix: the vendor's or the operator's."""
    return item.status == "fail" and (item.name in VENDOR_ITEMS or item.name not in DISTRICT_ITEMS)


def described(detail: str) -> str | None:
    """The district's own ``imsx_description`` in an item's detail, if there is one."""
    found = _IMSX.search(detail)
    if found is None:
        return None
    return found.group(1)[:MAX_DESCRIPTION]


def for_district(item: Item, *, campus: bool) -> dict[str, str]:
    """The item as the intake page shows it: name, status and a line for district IT."""
    if is_vendors(item):
        text = VENDOR_SETUP
    elif item.status == "ok":
        text = _OK.get(item.name, "Passed.")
        if item.name == "data_shared" and "shares more than" in item.detail:
            text += (
                " It also shares data that is not ticked here; the proxy never passes that on, "
                "but you may narrow this vendor's Data to Share in your SIS."
            )
    elif item.status == "skip":
        text = _SKIP.get(item.name, "Not checked: an item above has to pass first.")
    elif item.name == "credentials_accepted" and "serves no OneRoster" in item.detail:
        text = _NO_VERSION
    else:
        text = _FAIL[item.name]
        if item.name == "students_visible" and campus:
            text += _IC_STUDENTS
    said = described(item.detail) if item.status == "fail" else None
    return {
        "name": item.name,
        "title": TITLES.get(item.name, "Vendor's setup"),
        "status": item.status,
        "text": text,
        "said": said or "",
    }
