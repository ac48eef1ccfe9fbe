"""Thin DVC stage entry points: read params and inputs, call the library, write outputs atomically."""
