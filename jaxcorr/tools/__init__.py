"""Command-line tools run with `python -m jaxcorr.tools.<name>` (each module says how)."""
