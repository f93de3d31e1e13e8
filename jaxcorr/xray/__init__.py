"""Real radiographs: reading and writing files (`io`), fitting them to the model's input
(`letterbox`), and sparse point-pair annotations (`annotations`, docs/annotations.md).

NumPy, Pillow and pydicom only (no JAX), so tools and data loaders import these quickly.
"""

from jaxcorr.xray.io import Radiograph, read_radiograph, read_radiographs, XRayError
from jaxcorr.xray.letterbox import Letterbox

__all__ = ["Letterbox", "Radiograph", "XRayError", "read_radiograph", "read_radiographs"]
