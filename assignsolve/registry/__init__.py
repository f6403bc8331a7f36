"""The plugin registry: hook specifications and the (lazily built, cached) plugin manager."""
