"""neuroplastic."""
