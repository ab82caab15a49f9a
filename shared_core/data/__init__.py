"""Public data sets read straight from registry packages (never committed to this repository)."""
