"""The command line: argument parsing (main.py) and rendering of tables and JSON (render.py)."""
