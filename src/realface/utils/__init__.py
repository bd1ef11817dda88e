"""Small helpers shared by all parts of realface (file system, logging)."""
