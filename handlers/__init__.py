"""Thin Tornado handlers: parse the request, call a service, write JSON."""
