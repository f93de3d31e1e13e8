"""The bottom layer: small helpers with no jaxcorr imports that every other layer may use.

`choices` (the one checker of closed sets of values, dtype names), `files` (atomic writes, JSON,
the config of a finished run), `sharding` (the device mesh and its NamedShardings).
"""
