"""jaxcorr's configs as code: one module per job with `get_config(preset)` and a PRESETS table,
shared blocks in `common`. Installed with jaxcorr, so `--config=pretrain:tiny` works from any
directory (`jaxcorr.core.config_files`)."""
