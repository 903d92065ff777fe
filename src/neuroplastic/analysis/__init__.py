"""Analysis: plots, efficiency metrics, gradient comparison and loss landscapes."""
