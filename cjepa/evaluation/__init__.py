"""Evaluation: probes of what the predictor uses, counterfactual and VQA benchmarks."""
