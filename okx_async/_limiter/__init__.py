"""The limiter: the lease rules (`_rules`) and the stores that keep them.

`_memory`: one process, one event loop. `_sqlite`: every process on one host that names
the same file. `_urls`: picks a store from a URL. The Redis store lives in
`okx_async._redis_limiter`.
"""
