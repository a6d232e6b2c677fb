"""Local tooling: Azurite, the local Event Grid stand-in and ops commands. Not deployed."""
