"""Sub-commands of the `streamvis` CLI; each module has `add_arguments(parser)` and `run(args)`."""
