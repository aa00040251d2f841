"""MLflow runs -> ablation tables, plots and an HTML report. Reads MLflow only; imports no
training code (only the pure-Python ``cjepa.metrics`` and ``cjepa.stats``), so it runs wherever
the tracking store can be reached."""
