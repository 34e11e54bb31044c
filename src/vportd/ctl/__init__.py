"""`vportctl`, the client command line, and its REST client."""
