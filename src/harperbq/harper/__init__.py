"""Everything that talks to Harper."""
