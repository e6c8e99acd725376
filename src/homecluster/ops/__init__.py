"""The operations behind the CLI commands, each returning one result per host (nothing here prints)."""
