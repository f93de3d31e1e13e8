"""CT volumes: the `Volume` container, file readers, preprocessing and built-in phantoms."""

from jaxcorr.ct.volume import CTError, Volume
