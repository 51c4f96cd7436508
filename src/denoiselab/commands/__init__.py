"""Command families of the CLI, one module each (``add_parser``/options and the command functions);
``cli.py`` registers them. Only the CLI imports these modules."""
