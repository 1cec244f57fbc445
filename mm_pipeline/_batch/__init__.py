"""The batch API: jobs, their files, the download cache, and the batch route of a ranking.

- ``_job.py``      :class:`BatchJob` and the derived references and idempotency keys
- ``_session.py``  :class:`BatchSession`: list, submit (adopting), wait, download over a session
- ``_download.py`` result downloads: streamed, verified, retried while slots remain, cached
- ``_cache.py``    the result cache: storage proved before a slot is spent, per-job file lock
- ``_files.py``    the batch upload format: write ``.csv.gz`` files under the size cap, hash them
- ``_results.py``  the batch result format: parse result files into a typed frame, streaming
- ``_client.py``   :class:`BatchClient` (``client.batch``), sync and async
- ``_route.py``    rank a frame through batch jobs (split, run, map back)
- ``_plan.py``     the batch route's cost (jobs, uploads, polls, downloads) for ``mm.plan``
- ``_parquet.py``  Parquet working files: result parts, appended outputs, VIN buckets
- ``_large.py``    ``rank_dealers(output=...)``: LazyFrame in, VIN buckets on disk, Parquet out

The public names are re-exported by :mod:`mm_pipeline`.
"""
