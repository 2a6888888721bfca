"""Tables in, prepared splits out: what plan and plan_batch do with a user's data.

- ``tables``: reading a dataset (CSV and Parquet through pyarrow, ``.npz``, scikit-learn's
  bundled datasets) from a path or ``s3://``, with every problem a ``RequestError`` naming the
  field and the column.
- ``datasets``: an array dataset (``.npz``, a bundled one) loaded once per process, its target
  checked against the estimator, and the held-out split (and a search's validation split)
  every grove shares, by scikit-learn.
- ``prepared``: the run's split written once: the training rows as shards, the held-out rows
  as ``.npy`` arrays memory-mapped by groves and scoring.
- ``stream``: a CSV or Parquet table (a file, or a folder of them) planned in bounded memory:
  scanned, then encoded block by block into the training shards and the held-out (and a
  search's validation) rows, split row by row by a seeded hash.
- ``shards``: training rows as shards of verified stripes, of which a grove reads a seeded
  sample with parallel ranged reads.
- ``selection``: the columns a build trains on (the request's ``features`` and ``drop``), and
  the columns that look like ids, which plan warns of.
- ``encoding``: each column's kind, text columns' categories and codes, date columns' parts,
  times of day and durations as seconds.
- ``times``: the arithmetic of dates, times and durations from whole microseconds (numpy
  only), which ``encoding`` and ``records`` share.
- ``pipeline``: the ``Pipeline`` that encodes a DataFrame as the build did, of scikit-learn and
  pandas objects only.
- ``rows``: new rows for prediction, read block by block in the training columns' order.
- ``records``: rows given as JSON records (the serve function's requests), encoded as
  ``encoding`` encodes a table, without pyarrow; ``feature_columns``, a model's columns.
"""
