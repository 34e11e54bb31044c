"""`vportctl demo`: a VM migrating around a real lab (`live`), or narrated in-process."""
