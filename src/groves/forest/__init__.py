"""The model as groves: how a committed run becomes the scikit-learn model a user holds.

- ``loading``: ``load_model``, a committed run's plain forest (verified against the manifest),
  with ``feature_names_in_`` when it was trained on named columns, or, when text columns were
  encoded, the ``Pipeline`` of that encoding and the forest.
"""
