"""Outlets\x27 RSS/Atom feeds: fetching, parsing, health; outlet ratings from files."""
