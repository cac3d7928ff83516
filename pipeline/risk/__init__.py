"""Re-identification risk: measuring k, l and t of any table (privprep check) and linkage attacks on a run."""
