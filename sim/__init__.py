"""gemmstone.sim: the functional (golden) model, performance model and sweeps."""
