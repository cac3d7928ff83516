"""Pipeline config files: reading and validating a YAML config, and writing a starting one."""
