"""The change feed (docs/http-api.md "Change feed"): daily walks of a connection's rostering
collections, kept as sourcedIds and keyed hashes only, diffed into created / updated /
deleted changes that vendors read at ``GET /<appId>/changes``.

``pages`` reads a collection page by page through the gateway's signing and the district's
limits, ``diff`` hashes and diffs one walk and publishes or holds it (and accepts or discards
a held one), ``feed`` is the vendor endpoint, ``schedule`` the daily loop in the server.
"""
