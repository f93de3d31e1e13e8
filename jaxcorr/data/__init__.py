"""Training data: view sampling, CT volume banks, sample rendering, offline shards, Grain."""
