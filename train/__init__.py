"""Training: config, the per-worker loop, MLflow tracking, and the train.run CLI."""
