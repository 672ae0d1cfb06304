"""Thin resolvers: read the context, call one service, map the result to schema types."""
