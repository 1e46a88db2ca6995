"""Graph passes (Grappler style): small functions that rewrite an IR graph in place."""
