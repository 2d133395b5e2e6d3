"""Dataset adapters: native files in, canonical samples out."""
