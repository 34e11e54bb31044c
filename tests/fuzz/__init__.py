"""The fuzz tier: the REST API, the OpenFlow endpoint and the OVSDB monitor fed bad input."""
