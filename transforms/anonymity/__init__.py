"""The equivalence-class engine, privacy measures and the lattice search behind ``k_anonymity``."""
