"""The synchronous service RadiantGo is compared with (perf/bench_versus.py).

A small cargo-booking service written the plain way: FastAPI under uvicorn
(two worker processes, as RadiantGo's ingress has two), PostgreSQL through
psycopg 3 and a connection pool, each write done in the request, in one
transaction, and answered with its result. It does per request what
RadiantGo does per create and per depart (the same fields and limits, the
booking and its event written together, an API key looked up in the database
and cached in the process), so that the CPU each system spends per stored
result can be compared. A benchmark fixture only: no part of the product,
imported by nothing in core/, ingress/ or workers/.

    store.py    the schema, its SQL, and the benchmark's set-up (database,
                callers, seeded bookings), with psycopg's synchronous API
    app.py      the FastAPI app (uvicorn --factory perf.versus.app:create_app)
    service.py  a running service for a benchmark: database, server, clean-up
"""
