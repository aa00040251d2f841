"""MLflow runs -> ablation tables, plots and an HTML report (``python -m analysis.ablation_table``,
``analysis.report``, ``analysis.plots``, ``analysis.plan_table``). Reads MLflow only and imports
no training code: metric directions, references and families come from the sweep's recorded
``metrics.json``; only a sweep without it falls back to ``cjepa.metrics`` (the stage registry)."""
