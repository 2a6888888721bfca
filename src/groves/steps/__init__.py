"""What each Lambda step does: the functions in ``functions/*/app.py`` call ``handlers``, and
each handler one module here. The state machines in ``statemachine/`` order them.

The workflows stand side by side; no workflow's module imports another workflow's (a test
holds it: ``tests/unit/test_layout.py``):

- training (``statemachine/forest.asl.json``): ``plan`` (validate a training request and its
  data, prepare the split, plan the groves), ``train`` (fit a batch of groves, each with its
  votes on the held-out rows: the Map's items), ``commit`` (the merge step: commit a run from
  its groves' metadata, manifest then latest), ``score`` (the held-out score from the groves'
  stored votes: metrics.json).
- batch prediction: ``batch``: plan_batch (rows and tiles), predict_chunk (a tile), assemble.
- search: ``search``: plan_search (one training run per candidate, all sharing one copy of
  the rows), score_candidates, score_best.
- serving: ``serve``: one build's model answering JSON rows over a Function URL (and
  ``groves serve``), following the build's latest run; no scikit-learn, no pyarrow.

What they share, beside the lower layers:

- ``request``: the requests' fields, each defined once (type, bounds, default, help).
- ``checks``: a training request checked before any work (its fields, its source, its grove
  count, its forest parameters by scikit-learn's constraints): a build's plan and a search's.
- ``planned``: what a validated spec plans: its groves (count, trees and seed of each, at most
  ``MAX_GROVES``), the rows each grove reads, and the run's ``plan.json`` (training and the
  search's candidates plan runs alike).
- ``prepare``: a table's rows prepared in bounded memory (``groves.data.stream``): scanned,
  checked (``check_params_against_data``: the forest's parameters against the training rows),
  written as shards with the held-out rows kept; plan's one-file table and its Map's files,
  and a search's table (with validation rows) in plan_search, prepare alike.
- ``trained``: the groves a run trained: their metadata read and checked against the plan
  (merge, a search's candidates), their stored votes read verified (scoring, a search).
- ``cost``: what each invocation costs; ``events``: a ready event for one step, for ``sam
  local invoke``; ``handlers``: the handlers' events (``events/`` has samples) and their
  outputs, each calling its workflow's module.

Steps read and write through ``groves.store``, read tables through ``groves.data`` and
groves through ``groves.forest`` (a committed run's votes: ``forest.loading.committed_votes``);
nothing here imports the engine or the CLI.
"""
