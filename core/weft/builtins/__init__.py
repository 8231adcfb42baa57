"""Core's built-in plugins, registered through core's own entry points like any other plugin."""
