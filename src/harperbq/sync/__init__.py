"""The sync engine; knows neither HTTP nor SQL details."""
