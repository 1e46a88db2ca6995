"""``python -m gemmstone.sim.sweep``: the `gemmstone sweep` command on its own."""

from gemmstone.sim.sweep.cli import sweep_command

if __name__ == "__main__":  # worker processes (spawn) import this module too
    sweep_command(prog_name="python -m gemmstone.sim.sweep")
