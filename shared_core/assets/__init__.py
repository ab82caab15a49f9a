"""Data files shipped with the package (bundled documents for the demo)."""
