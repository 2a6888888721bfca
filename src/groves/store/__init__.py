"""Where everything is kept and how it is checked.

- ``protocol``: the ``Store`` interface and what every backend guarantees (whole-object
  replacement, read and list after write, create-if-absent, compare-and-swap), which the
  commit is built on; ``ArtifactNotFound``, ``CannotRead``.
- ``local``: a directory as a store (``LocalStore``), atomic by temporary file and rename
  (``atomic_file``).
- ``s3``: ``s3://bucket/prefix`` as a store (``S3Store``) through boto3: conditional writes,
  ranged reads, the transfer manager for large files.
- ``cache``: the S3 download cache of local copies, bounded, least recently used out first.
- ``codec``: JSON records and ``.npy`` arrays (lz4-framed votes) as a store's bytes, and back.
- ``uris``: what a URI names: a store (``open_store``, ``check_store``), or one file outside
  any store (a user's data, a batch's output).
- ``artifacts``: every key a run, a batch and a search write (the layout), how a run is
  committed (manifest, then ``latest.json``, never backwards), and reading a file only after
  its size and sha256 match what its writer recorded.
- ``promotions``: ``groves promote`` (any committed run becomes ``latest``, pinned against runs
  that started before it) and the build's record of every promote.
- ``cleanup``: ``groves rm`` and ``groves gc`` (runs, and the folders of ended batch
  predictions and searches; ``--dry-run``), which never delete the latest or a run or folder
  that a batch, search or build in progress uses.
- ``records``: one schema per kind of stored JSON record (latest, plan, manifest, grove,
  metrics), checked whenever one is read back: a damaged record is one ``CorruptFile`` line.
"""
