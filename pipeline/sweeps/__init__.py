"""Sweeps: what each setting of k and epsilon costs, and the docs page built from one."""
