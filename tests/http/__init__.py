"""HTTP-level tests: headers, request shapes, limits, CSRF/CORS and production switches."""
