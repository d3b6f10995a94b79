"""optexp's built-in configs: one folder per config group, `config.yaml` holds the defaults.

A package (not a plain folder) so that the YAML files ship inside the wheel and Hydra
finds them by module, `pkg://optexp.configs`, wherever optexp is installed.
"""
