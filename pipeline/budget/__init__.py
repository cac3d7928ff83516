"""The privacy budget: the per-dataset ledger every DP release and training run spends from."""
