"""core.metrics: what each process measures before it records it."""

from core import metrics


def _fake_host(root, *, total_kb, available_kb, cgroup=None):
    """A /proc/meminfo and, given one, a cgroup's memory files under `root`."""
    (root / "proc").mkdir(parents=True)
    (root / "proc/meminfo").write_text(
        f"MemTotal:       {total_kb} kB\nMemFree:        1 kB\nMemAvailable:   {available_kb} kB\n"
    )
    for name, text in (cgroup or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_memory_used_is_the_containers_share_of_its_limit_else_the_hosts(tmp_path):
    gib = 1024**3
    host = _fake_host(tmp_path / "host", total_kb=16 * 1024**2, available_kb=4 * 1024**2)
    assert metrics.memory_used(host) == 0.75
    v2 = {
        "sys/fs/cgroup/memory.max": f"{2 * gib}\n",
        "sys/fs/cgroup/memory.current": f"{gib + gib // 2}\n",
        "sys/fs/cgroup/memory.stat": f"anon {gib}\ninactive_file {gib // 4}\n",
    }
    limited = _fake_host(
        tmp_path / "v2", total_kb=16 * 1024**2, available_kb=15 * 1024**2, cgroup=v2
    )
    assert metrics.memory_used(limited) == 0.625  # (1.5 - 0.25) GiB of 2 GiB
    unlimited = {**v2, "sys/fs/cgroup/memory.max": "max\n"}
    no_limit = _fake_host(
        tmp_path / "max", total_kb=16 * 1024**2, available_kb=4 * 1024**2, cgroup=unlimited
    )
    assert metrics.memory_used(no_limit) == 0.75
    v1 = {  # cgroup v1 says "no limit" with a huge number
        "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
        "sys/fs/cgroup/memory/memory.usage_in_bytes": f"{gib}\n",
        "sys/fs/cgroup/memory/memory.stat": "total_inactive_file 0\n",
    }
    old = _fake_host(tmp_path / "v1", total_kb=16 * 1024**2, available_kb=8 * 1024**2, cgroup=v1)
    assert metrics.memory_used(old) == 0.5
    assert metrics.memory_used(tmp_path / "nothing") is None
