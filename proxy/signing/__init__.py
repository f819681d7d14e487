"""Upstream request signing: OAuth 1.0a (RFC 5849) and OAuth2 client credentials (RFC 6749).

``OAuth1Signer`` builds the ``Authorization`` header for OneRoster 1.1 districts;
``OAuth2TokenSource`` fetches and caches bearer tokens for OAuth2 districts.
"""

from __future__ import annotations

from proxy.signing.oauth1 import OAuth1Signer
from proxy.signing.oauth2 import OAuth2TokenSource

__all__ = ["OAuth1Signer", "OAuth2TokenSource"]
