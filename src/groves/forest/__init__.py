"""The model as groves: how fitted groves are kept, summed and put together as the
scikit-learn model a user holds.

- ``format``: a grove file (``groves-trees/1``): a fitted forest as data, written by
  train_grove and read without running code.
- ``votes``: trees' votes summed in the forest's order, and the labels, values and scores read
  from them (training, scoring, search and batch prediction share it); ``Target``.
- ``loading``: ``load_model``, a committed run's plain forest from its verified groves (with
  ``feature_names_in_`` when trained on named columns, or the ``Pipeline`` of the text
  encoding and the forest); ``export_model``, that forest as one joblib file; the groves a
  warm process keeps decoded.
"""
