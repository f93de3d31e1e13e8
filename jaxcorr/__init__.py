"""jaxcorr: multi-view X-ray correspondence learning in JAX.

Subpackages: `ct` (loading, preprocessing, phantoms), `geometry` (cone-beam views),
`drr` (the ray-marching projector), `jobs` (config-driven entry points run by `main`).
Nothing heavy happens at import time.
"""

__version__ = "0.1.0"
