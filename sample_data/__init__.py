"""Sample data for the demo and tests; ``python -m sample_data.generate`` rebuilds it."""
