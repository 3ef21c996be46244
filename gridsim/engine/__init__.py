"""The engines: request fidelity (every request) and, later, flow fidelity (arrays per tick)."""
