"""Typer commands: parse, call the layer below, render with rich."""
