"""The read side of `serve`: the series API (`GET /api/v1/series`), the status page and its static files,
and who may read them.

It reads series through one narrow interface, `SeriesReader` (`series.py`): `TableReader` over this
process's `SeriesTable`, or the cluster node with the Redis backend (`cluster/node.py`), which answers
from the series objects every partition owner publishes, so any replica shows every series without
touching ingestion. `routes.py` adds the routes to the HTTP server's application (`app.py` wires them);
`web/` holds the page.
"""
