"""The runtime's bounded caches: a fixed number of entries, the least recently used forgotten."""

from gateway.app.cache import BoundedCache


def test_a_full_cache_forgets_the_entry_used_longest_ago() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the more recent of the two
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


def test_putting_a_known_key_again_replaces_it_without_growing() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("a", 5)
    cache.put("b", 2)
    assert (cache.get("a"), cache.get("b"), len(cache)) == (5, 2, 2)
    cache.pop("a")
    cache.pop("missing")
    assert "a" not in cache and len(cache) == 1


def test_many_members_stay_within_the_bound() -> None:
    cache: BoundedCache[str, tuple[str, bool]] = BoundedCache(1_000)
    for i in range(50_000):
        cache.put(f"m{i}", (f"0x{i:040x}", False))
    assert len(cache) == 1_000
    assert cache.get("m49999") == (f"0x{49999:040x}", False) and cache.get("m0") is None
