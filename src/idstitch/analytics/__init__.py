"""The analytics engine beside the store (design.md "Two engines, two jobs"): a columnar copy of
events and of the person side they join, fed from the store's sequence, answering counts,
breakdowns and "did X N times" filters with the query layer's own SQL.

    engine.py             the interface and one step of the feed
    feeder.py             keeps a copy up with the store, in the background or on a query's demand
    duckdb_engine.py      the embedded copy (a DuckDB file in the data directory)
    duckdb_sql.py         the query layer's SQL pieces in DuckDB's words
    choice.py             which engine a server runs (`--analytics`)
"""
