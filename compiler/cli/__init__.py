"""The compile-transfer command: flags, the console script, the printed summary."""
