"""Counterparties and their cover status."""
