"""The smart property platform service: store, services and the Tornado application."""
