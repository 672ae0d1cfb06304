"""Firms: the tenant itself."""
