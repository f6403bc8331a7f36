"""The solver core: :class:`Problem`, :class:`Assignment`, :class:`BaseSolver`, array helpers,
errors and validators. Nothing here imports a plugin, the training loop or the CLI."""
