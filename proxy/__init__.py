"""oneroster-proxy: one stable URL and one bearer token for every district's OneRoster API."""

__version__ = "0.1.0"
