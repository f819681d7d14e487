"""A loaded configuration, precomputed for the hot path, swapped atomically on reload.

A ``Runtime`` is immutable once built: a request takes the current one at its start and keeps
it to its end, so a SIGHUP reload never changes a request in flight (docs/commands.md ``serve``).
Per connection it holds the OAuth1 signer (HMAC key precomputed), or the OAuth2 token source, the
upstream URL prefix and the vendor-authorization header value. OAuth2 token sources are carried
over from the previous runtime when their credentials are unchanged, so a reload does not make
every district issue a new token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from proxy.config import Config, ConnectionConfig, DistrictConfig, VendorConfig
from proxy.gateway.hrefs import HrefMatcher
from proxy.gateway.rewrite import UpstreamPrefix, upstream_prefix
from proxy.sharing.policy import Policy
from proxy.signing.oauth1 import OAuth1Signer
from proxy.signing.oauth2 import OAuth2TokenSource


@dataclass(frozen=True, slots=True)
class Connection:
    config: ConnectionConfig
    district: DistrictConfig
    vendor: VendorConfig
    upstream_prefix: str  # "<base_url>/ims/oneroster/"
    link_prefix: UpstreamPrefix  # the same, parsed once for Link rewriting
    signer: OAuth1Signer | None
    token_source: OAuth2TokenSource | None
    vendor_header: str | None  # value of x-vendor-authorization on gradebook endpoints
    hrefs: HrefMatcher | None = None  # the district's rewrite_hrefs matcher; None when off
    # ``config.ends_at`` as epoch seconds (None: no expiry): compared with time.time() per
    # request, cheaper than building a datetime.
    ends_at: float | None = None
    # The connection's drop_fields, compiled (docs/configuration.md "Sharing policy").
    policy: Policy = field(default_factory=lambda: Policy.of(()))

    @property
    def app_id(self) -> str:
        return self.config.app_id


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    connections: Mapping[str, Connection]
    token_sources: Mapping[tuple[str, ...], OAuth2TokenSource] = field(default_factory=dict)

    @property
    def vendors(self) -> Mapping[str, VendorConfig]:
        return self.config.vendors


TokenSourceFactory = Callable[
    [DistrictConfig, ConnectionConfig, list[str], float], OAuth2TokenSource
]


def build_runtime(
    config: Config,
    token_source_factory: TokenSourceFactory,
    previous: Runtime | None = None,
) -> Runtime:
    connections: dict[str, Connection] = {}
    sources: dict[tuple[str, ...], OAuth2TokenSource] = {}
    # Parsed once per district, not once per connection (a district may have thousands).
    link_prefixes = {
        name: upstream_prefix(district.base_url) for name, district in config.districts.items()
    }
    href_matchers = {
        name: HrefMatcher.for_district(district.base_url)
        for name, district in config.districts.items()
        if district.rewrite_hrefs
    }
    old_sources = previous.token_sources if previous is not None else {}

    def source_for(
        key: tuple[str, ...], district: DistrictConfig, conn: ConnectionConfig, scopes: list[str]
    ) -> OAuth2TokenSource:
        source = sources.get(key) or old_sources.get(key)
        if source is None:
            source = token_source_factory(district, conn, scopes, config.server.upstream_timeout)
        sources[key] = source
        return source

    for app_id, conn in config.connections.items():
        district = config.districts[conn.district]
        connections[app_id] = make_connection(
            conn,
            district,
            config.vendors[conn.vendor],
            source_for,
            link_prefix=link_prefixes[district.name],
            hrefs=href_matchers.get(district.name),
        )
    return Runtime(config=config, connections=connections, token_sources=sources)


SourceFor = Callable[
    [tuple[str, ...], DistrictConfig, ConnectionConfig, list[str]], OAuth2TokenSource
]


def source_key(district: DistrictConfig, conn: ConnectionConfig) -> tuple[str, ...]:
    """What an OAuth2 token is for: a connection whose credentials, token URL or scopes
    change gets a new token source (and the old token is no longer used)."""
    return (
        district.name,
        district.token_url or "",
        conn.key,
        conn.secret,
        *conn.scope_uris(oauth2_version(district)),
    )


def oauth2_version(district: DistrictConfig) -> str:
    return "v1p2" if "v1p2" in district.versions else "v1p1"


def make_connection(
    conn: ConnectionConfig,
    district: DistrictConfig,
    vendor: VendorConfig,
    source_for: SourceFor,
    *,
    link_prefix: UpstreamPrefix | None = None,
    hrefs: HrefMatcher | None = None,
) -> Connection:
    """One connection, ready for the hot path: its OAuth1 signer (HMAC key precomputed) or
    its OAuth2 token source (from ``source_for``, shared by connections with the same key)."""
    signer: OAuth1Signer | None = None
    source: OAuth2TokenSource | None = None
    if district.auth == "oauth1":
        signer = OAuth1Signer(conn.key, conn.secret, district.signature_method)
    else:
        key = source_key(district, conn)
        source = source_for(key, district, conn, list(key[4:]))
    vendor_header = None
    if district.vendor_authorization and vendor.vendor_authorization:
        vendor_header = vendor.vendor_authorization
    if link_prefix is None:
        link_prefix = upstream_prefix(district.base_url)
    if hrefs is None and district.rewrite_hrefs:
        hrefs = HrefMatcher.for_district(district.base_url)
    return Connection(
        config=conn,
        district=district,
        vendor=vendor,
        upstream_prefix=district.upstream_prefix,
        link_prefix=link_prefix,
        signer=signer,
        token_source=source,
        vendor_header=vendor_header,
        hrefs=hrefs,
        ends_at=None if conn.ends_at is None else conn.ends_at.timestamp(),
        policy=policy_of(conn.drop_fields),
    )


_POLICIES: dict[tuple[str, ...], Policy] = {}


def policy_of(entries: tuple[str, ...]) -> Policy:
    """The compiled policy of ``entries``, shared by every connection with the same list (most
    keep the default)."""
    policy = _POLICIES.get(entries)
    if policy is None:
        if len(_POLICIES) >= 1024:
            _POLICIES.clear()
        policy = _POLICIES[entries] = Policy.of(entries)
    return policy
