"""The read side beyond single persons: filters, sessions, counts, saved segments, identity lookups.

Every function here is synchronous and takes an open (read-only) connection, like `store/reads.py`;
the server runs them in its thread pool. Filters arrive as validated documents (`filters.py`) and
are compiled to SQL whose text is fixed by this package: user input only ever travels as bound
parameters (`compiler.py`).
"""
