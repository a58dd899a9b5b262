"""`medattn` subcommands, one module each (see `medattn.cli`)."""
