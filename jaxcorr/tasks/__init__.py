"""Tasks: what the one training loop trains (a `jaxcorr.train.task.Task` each)."""
