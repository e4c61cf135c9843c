"""Examples and the demo's data helpers (not part of the installed package)."""
