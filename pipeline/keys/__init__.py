"""Keys: keyring files, Parquet column encryption with keyring-backed keys, authorized decryption."""
