"""What runs where: the lock of managed environments, the wheelhouse, host facts, and the record of
packages and uploads added to a running cluster."""
