"""Where data and runs live: reading the input, writing Parquet parts, run directories (local or in an object store), atomic writes, the sample data."""
