"""Token buckets, one per key (an API key, a client address), in this process."""

from __future__ import annotations

import threading
import time

MAX_KEYS = 10_000  # beyond this many, buckets full again are forgotten (a full bucket = a new one)


class TokenBuckets:
    """`rate` tokens a second per key, up to `burst` (default: twice the rate); each request takes one."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = 2 * rate if burst is None else burst
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self.lock:
            if len(self.buckets) > MAX_KEYS:
                refill = self.burst / self.rate
                self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < refill}
            tokens, last = self.buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1
            self.buckets[key] = (tokens - 1 if allowed else tokens, now)
            return allowed
