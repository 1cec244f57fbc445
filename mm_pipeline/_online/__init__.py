"""The online route: the rank endpoints, group by group (see ``docs/architecture.md``).

``_run`` (groups, workers, failures) drives ``_rounds`` (the pure re-ranking schedule) through
``_chunks`` (one chunk request: encode, send, prune 422s); answers are matched back to
positions by ``_match``, refusals attributed by ``_refusals``, results kept per position in
``_record`` and turned into frames there. Nothing is re-exported here, so that importing one
of these modules (``_plan`` imports ``_rounds``) never imports the others.
"""
