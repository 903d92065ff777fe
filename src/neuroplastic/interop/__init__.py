"""Interoperability with other SNN tools: NIR export and import (see docs/interop.md)."""

from .nir import SEMANTICS, export_run, network_from_nir, network_to_nir

__all__ = ["SEMANTICS", "export_run", "network_from_nir", "network_to_nir"]
