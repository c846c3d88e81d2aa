"""Beyond one machine: a box's download sharded over Dask workers or ``--shard K/N`` processes.

Optional (``pip install amly[dask]`` for the cluster part; sharding, markers and merging need
nothing extra). The pieces, each in its own module:

- :mod:`.shard`: z14 tiles grouped under z13 tiles; groups hashed stably into shards.
- :mod:`.limiter`: the per-token rate limits held across all workers (a token bank on the
  Dask scheduler, leased by every worker's limiter; same ``acquire``/``pause`` interface as
  :class:`amly.net.RateLimiter`).
- :mod:`.markers`: per-tile completion markers kept in the output, so a re-run tile (a killed
  worker's) stores nothing twice and a rerun of the whole job resumes.
- :mod:`.merge`: shard outputs merged into one folder and one ``index.geojson``.
"""
