"""Seeing the data: episode contact sheets, a static release gallery, dataset-card assets and run reports.

Everything here reads a release back through ``pb_build.eval.data`` (episodes) or evaluator run folders; nothing
names a source or imports a builder.
"""
