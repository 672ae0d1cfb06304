"""Rate limiting on the ``limits`` library: named policies, a shared limiter, client IPs.

Call sites count operations, not HTTP requests::

    await limiter.hit(Policy.SIGN_IN_PER_EMAIL, email)   # raises RateLimited(retryAfter=...)

The HTTP-level per-IP ceiling is ``app.ratelimit.middleware.IpCeiling`` (pure ASGI), and the
client's address comes from ``app.ratelimit.client_ip``. Nothing here imports Starlette, so
services may use the limiter directly.
"""

from app.ratelimit.limiter import RateLimiter, open_limiter
from app.ratelimit.policies import Policy

__all__ = ["Policy", "RateLimiter", "open_limiter"]
