"""What each Lambda step does: the functions in ``functions/*/app.py`` call ``handlers``, and
each handler one module here. The state machines in ``statemachine/`` order them.

- ``handlers``: the ten handlers' events (``events/`` has samples) and their outputs.
- ``plan``: validate a training request and its data, prepare the split, plan the groves.
- ``train``: fit a batch of groves, each with its votes on the held-out rows (the Map's items).
- ``commit``: (the merge step) commit a run from its groves' metadata: manifest, then latest.
- ``score``: the held-out score from the groves' stored votes (metrics.json).
- ``batch``: batch prediction: plan_batch (rows and tiles), predict_chunk (a tile), assemble.
- ``search``: plan_search (one run per candidate), score_candidates, score_best.
- ``serve``: the serve function: one build's model answering JSON rows over a Function URL
  (and ``groves serve``), following the build's latest run; no scikit-learn, no pyarrow.
- ``planned``: the groves a spec plans (count, trees and seed of each), numpy only.
- ``request``: the requests' fields, each defined once (type, bounds, default, help);
  ``cost``: what each invocation costs; ``events``: a ready event for one step, for
  ``sam local invoke``.

Steps read and write through ``groves.store``, read tables through ``groves.data`` and
groves through ``groves.forest``; nothing here imports the engine or the CLI.
"""
