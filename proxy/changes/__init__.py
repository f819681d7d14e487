"""The change feed (docs/http-api.md "Change feed"): daily walks of a connection's rostering
collections, kept as sourcedIds and keyed hashes only, diffed into created / updated /
deleted changes that vendors read at ``GET /<appId>/changes``.

``pages`` pages a collection through the district (``walk``), ``diff`` hashes and diffs a
walk and publishes or holds it, ``feed`` is the vendor endpoint, ``schedule`` the daily loop.
"""
