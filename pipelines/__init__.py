"""DVC stage scripts: each stage is a pure function plus a ``main()`` that reads
``params.yaml`` and writes the stage's outputs. ``dvc.yaml`` runs them with
``python -m pipelines.<stage>`` from the repository root.

Example:
    >>> from pipelines.prepare import split_frame  # doctest: +SKIP
"""
