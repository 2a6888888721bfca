"""A committed run as an ONNX model (``groves export NAME --format onnx``), so that the forest
can be served anywhere ONNX Runtime runs. Built from the run's verified grove arrays as the
serve function flattens them (``forest.served``), with ``onnx.helper``: no scikit-learn, no
pickle.

Graph: one input per column when the model has text columns (``float`` ``[N, 1]`` for numbers
and booleans, ``string`` ``[N, 1]`` for text, coded by an ``ai.onnx.ml`` ``LabelEncoder`` of the
training categories: an unseen or empty string is missing, NaN), concatenated in training
order; otherwise one input ``X``, ``float [N, n_features]`` in training order (NaN: missing).
Then one ``TreeEnsembleRegressor`` holding every tree: thresholds as float32 rounded down
(``x <= t`` is exact for float32 inputs), each node's learned side for missing values
(``nodes_missing_value_tracks_true``), each leaf's votes over the tree count, summed. A
regressor's output is ``predictions`` (``[N, n_outputs]``); a classifier's are ``label`` and
``probabilities`` (``label_k`` and ``probabilities_k`` for output ``k`` of several): its
labels are picked by ``ArgMax`` (the first most probable, as scikit-learn) from a constant of
the classes, not by ``TreeEnsembleClassifier``, whose two-class label ONNX Runtime decides by
a rule of its own (measured: it labelled rows whose probability of the other class was 0.89).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from groves.forest.kernel import Kernel
from groves.forest.served import ServedModel, load_served
from groves.store.protocol import Store

ML_OPSET, OPSET = 3, 17


def onnx_model(served: ServedModel) -> Any:
    """The ONNX ``ModelProto`` of a served model."""
    import onnx
    from onnx import TensorProto, helper

    kernel = served.kernel
    columns = served.encoder.columns
    graph, inputs, constants = [], [], []
    if any(c["kind"] == "category" for c in columns):
        parts = []
        for j, column in enumerate(columns):
            name = column["name"]
            if column["kind"] == "category":
                inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, [None, 1]))
                parts.append(f"code_{j}")
                graph.append(
                    helper.make_node(
                        "LabelEncoder",
                        [name],
                        [parts[-1]],
                        domain="ai.onnx.ml",
                        keys_strings=list(column["categories"]),
                        values_floats=[float(i) for i in range(len(column["categories"]))],
                        default_float=float("nan"),
                    )
                )
            else:
                inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1]))
                parts.append(name)
        graph.append(helper.make_node("Concat", parts, ["X"], axis=1))
    else:
        inputs.append(helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, len(columns)]))
    width = kernel.width
    votes = "predictions" if kernel.classes is None else "votes"
    graph.append(
        helper.make_node(
            "TreeEnsembleRegressor", ["X"], [votes], domain="ai.onnx.ml", **_ensemble(kernel)
        )
    )
    if kernel.classes is None:
        outputs = [helper.make_tensor_value_info(votes, TensorProto.FLOAT, [None, width])]
    else:
        outputs = _labels(kernel.classes, graph, constants)
    model = helper.make_model(
        helper.make_graph(graph, f"groves {served.build_id}", inputs, outputs, constants),
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name="groves",
    )
    model.ir_version = 8  # read by ONNX Runtime 1.14 and later
    helper.set_model_props(
        model,
        {
            "build_id": served.build_id,
            "run_id": served.run_id,
            "columns": ",".join(c["name"] for c in columns),
        },
    )
    onnx.checker.check_model(model)
    return model


def _labels(classes: tuple[np.ndarray, ...], graph: list[Any], constants: list[Any]) -> list[Any]:
    """Each output's probabilities (its columns of the summed votes) and label (the first
    most probable class, as scikit-learn picks it): ``probabilities`` and ``label``, or
    ``probabilities_k`` and ``label_k`` for output ``k`` of several."""
    from onnx import TensorProto, helper, numpy_helper

    outputs = []
    start = 0
    for k, labels in enumerate(classes):
        suffix = "" if len(classes) == 1 else f"_{k}"
        proba, label = f"probabilities{suffix}", f"label{suffix}"
        stop = start + len(labels)
        if len(classes) == 1:
            graph.append(helper.make_node("Identity", ["votes"], [proba]))
        else:
            bounds = [f"bounds_{k}_{n}" for n in ("start", "stop", "axis")]
            for name, value in zip(bounds, (start, stop, 1), strict=True):
                constants.append(numpy_helper.from_array(np.array([value], np.int64), name))
            graph.append(helper.make_node("Slice", ["votes", *bounds], [proba]))
        graph.append(helper.make_node("ArgMax", [proba], [f"index{suffix}"], axis=1, keepdims=0))
        values = np.asarray(labels)
        if values.dtype.kind in "US":
            values = values.astype(object)
        constants.append(numpy_helper.from_array(values, f"classes{suffix}"))
        graph.append(helper.make_node("Gather", [f"classes{suffix}", f"index{suffix}"], [label]))
        kind = constants[-1].data_type
        outputs.append(helper.make_tensor_value_info(label, kind, [None]))
        outputs.append(
            helper.make_tensor_value_info(proba, TensorProto.FLOAT, [None, stop - start])
        )
        start = stop
    return outputs


def _ensemble(kernel: Kernel) -> dict[str, Any]:
    """A ``TreeEnsembleRegressor``'s attributes from the flat kernel: every tree, each leaf's
    votes (a classifier's class probabilities) over the tree count, summed."""
    n_features, n_trees = kernel.n_features, kernel.n_trees
    flat = kernel.nodes
    sizes = np.diff(np.append(kernel.roots, len(flat))).astype(np.int64)
    tree = np.repeat(np.arange(n_trees, dtype=np.int64), sizes)
    first = np.repeat(kernel.roots.astype(np.int64), sizes)
    local = np.arange(len(flat), dtype=np.int64) - first
    split = ~np.isnan(flat["threshold"])
    feature = flat["feature"].astype(np.int64)
    missing_left = (feature < n_features) & split
    feature = np.where(feature >= n_features, feature - n_features, feature)
    leaves = np.flatnonzero(~split)
    votes = kernel.table[flat["left"][leaves]] / n_trees  # (leaves, width)
    width = votes.shape[1]
    return {
        "nodes_treeids": tree.tolist(),
        "nodes_nodeids": local.tolist(),
        "nodes_featureids": np.where(split, feature, 0).tolist(),
        "nodes_modes": np.where(split, "BRANCH_LEQ", "LEAF").tolist(),
        "nodes_values": np.where(split, flat["threshold"], 0.0).astype(np.float32).tolist(),
        "nodes_truenodeids": np.where(split, flat["left"] - first, 0).tolist(),
        "nodes_falsenodeids": np.where(split, flat["right"] - first, 0).tolist(),
        "nodes_missing_value_tracks_true": missing_left.astype(np.int64).tolist(),
        "target_treeids": np.repeat(tree[leaves], width).tolist(),
        "target_nodeids": np.repeat(local[leaves], width).tolist(),
        "target_ids": np.tile(np.arange(width), len(leaves)).tolist(),
        "target_weights": votes.astype(np.float32).ravel().tolist(),
        "n_targets": width,
        "aggregate_function": "SUM",
        "post_transform": "NONE",
    }


def export_onnx(store: Store, build_id: str, path: Path, run_id: str | None = None) -> Path:
    """Write the run's forest (by default the build's latest committed run) and its text
    encodings as an ONNX model to ``path``."""
    import onnx

    model = onnx_model(load_served(store, build_id, run_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path
