"""The model as groves: how fitted groves are kept, summed and put together as the
scikit-learn model a user holds.

- ``format``: a grove file (``groves-trees/2``): a fitted forest's trees as data, written by
  train_grove and decoded and verified with numpy alone (``GroveArrays``), without running
  code, crashing or expanding without bound.
- ``trees``: a grove's verified arrays as scikit-learn's forest, its node records mapped by
  field name onto the installed scikit-learn's.
- ``votes``: trees' votes summed in the forest's order, and the labels, values and scores read
  from them (training, scoring, search and batch prediction share it); ``Target``.
- ``measures``: the measures beside the score (balanced accuracy, log-loss, ROC AUC, each
  class's precision, recall and F1; a regressor's MAE and RMSE), from summed votes.
- ``loading``: ``load_model``, a committed run's plain forest from its verified groves (with
  ``feature_names_in_`` when trained on named columns, or the ``Pipeline`` of the text
  encoding and the forest); ``export_model``, that model as one joblib file; the groves a
  warm process keeps decoded.
- ``kernel``: a forest as flat arrays (16 bytes a node), every tree walked at once with numpy;
  predicts as scikit-learn does, without it (the serve function's engine).
- ``native``: the kernel's walk compiled (``walk.c`` through ``ctypes``), built with the serve
  layer or compiled once here; numpy's walk when there is none.
- ``served``: a committed run's verified groves as a ``kernel`` with the encoder of its rows.
- ``onnx_export``: that model and its text encodings as an ONNX model (``groves export
  --format onnx``), built with ``onnx.helper`` from the flat arrays.
"""
