"""The maritime (AIS) data synthesizer."""
