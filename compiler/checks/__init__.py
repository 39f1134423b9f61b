"""Checks of the final bytes: op audit and base preserved, every signature run, --verify."""
