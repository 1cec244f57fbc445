"""``python -m mm_pipeline`` runs the ``mm-pipeline`` command."""

from mm_pipeline.cli import main

main()
