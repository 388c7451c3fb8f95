"""Ids in URL paths fit the database's 64-bit integer columns.

Starlette's ``{name:int}`` matches any run of digits, and a 40-digit id reached SQLite as an integer it cannot hold
(``OverflowError``: a 500 for a URL anyone may type). Ids here are at most :data:`MAX_ID` (18 digits, below SQLite's
and PostgreSQL's signed 64-bit ``INTEGER``/``BIGINT`` limit of 2**63 - 1); a longer number matches no route, so the
answer is the 404 of any unknown address. Registered when the ``rcp`` package is imported, before any route table
is compiled, because Starlette compiles a route's pattern when the route is made.

>>> from starlette.routing import Route
>>> route = Route("/api/cases/{case_id:int}", lambda request: None)
>>> route.path_regex.match("/api/cases/" + "9" * 18) is not None
True
>>> route.path_regex.match("/api/cases/" + "9" * 19) is None
True
"""

from __future__ import annotations

from starlette.convertors import IntegerConvertor, register_url_convertor

#: Largest id a path may carry: 18 digits, under 2**63 - 1.
MAX_ID = 10**18 - 1


class BoundedIntegerConvertor(IntegerConvertor):
    """``{name:int}`` limited to 1 to 18 digits (:data:`MAX_ID`)."""

    regex = "[0-9]{1,18}"


register_url_convertor("int", BoundedIntegerConvertor())
