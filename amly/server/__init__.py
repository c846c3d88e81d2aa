"""The local Mapillary-compatible server: embedded default for the demo, tests and benchmarks,
and a test double other services can run (``amly server``)."""
