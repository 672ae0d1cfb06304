"""The HTTP edge: middleware, the GraphQL endpoint and the small plain routes."""
