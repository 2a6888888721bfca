"""Where everything is kept and how it is checked.

- ``storage``: a directory or an S3 prefix behind one interface (``LocalStore``,
  ``S3Store``), the S3 download cache, atomic and conditional writes, JSON and ``.npy`` bytes.
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
