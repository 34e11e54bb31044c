"""The REST API: northbound (VMM, operators) and east-west (peers), FastAPI."""
