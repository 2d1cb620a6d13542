"""Small helpers shared by several stages (files, coordinate hashing)."""
