"""The street-level imagery services amly speaks to, one subpackage each."""
