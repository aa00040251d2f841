"""MLflow runs -> ablation tables, plots and an HTML report. Reads MLflow only; imports no
training code (``cjepa``), so it runs wherever the tracking store can be reached."""
