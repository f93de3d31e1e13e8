"""Tasks: what the one training loop trains (a `jaxcorr.tasks.base.Task` each)."""
