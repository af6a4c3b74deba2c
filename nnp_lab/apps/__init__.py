"""Applications built on the library: each a module + notebook + widget view."""
