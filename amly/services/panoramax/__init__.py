"""Panoramax (geovisio): upload sets, STAC search, pictures. See :class:`PanoramaxClient`."""

from __future__ import annotations

from .client import PanoramaxClient

__all__ = ["PanoramaxClient"]
