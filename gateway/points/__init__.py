"""The points rules of SPEC section 2 as plain Python: the one model and formula."""
