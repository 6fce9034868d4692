"""The server-cost section's arithmetic and tables (nothing here is timed or measured)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import report
from bench.servercost import (
    BATCH_CPU_SECONDS,
    KINDS,
    MAX_BATCH,
    MAX_BATCH_SECONDS,
    MIN_BATCH,
    TICK_SECONDS,
    Batch,
    add_ceilings,
    alloc_ratio,
    batch_done,
    ceiling,
    orders,
    parse_counter,
    summarize,
    verdict,
)


def test_orders_rotate_so_every_kind_leads_once_per_cycle() -> None:
    rounds = orders(KINDS, len(KINDS))
    assert rounds[0] == list(KINDS)
    assert [r[0] for r in rounds] == list(KINDS)
    assert all(sorted(r) == sorted(KINDS) for r in rounds)
    assert orders(KINDS, 7)[5] == list(KINDS)  # the cycle starts again


def test_batch_runs_until_enough_server_cpu_over_an_even_number_of_requests() -> None:
    assert not batch_done(MIN_BATCH, BATCH_CPU_SECONDS - 0.01, 1.0)
    assert not batch_done(MIN_BATCH - 2, 5.0, 1.0)  # too few requests, however costly
    assert not batch_done(MIN_BATCH + 1, 5.0, 1.0)  # odd: the object would end half-way
    assert batch_done(MIN_BATCH, BATCH_CPU_SECONDS, 1.0)
    assert batch_done(MAX_BATCH, 0.0, 1.0)  # a stuck CPU reading cannot run forever
    assert batch_done(2, 0.0, MAX_BATCH_SECONDS)
    # Two ticks (one per process) are under 5% of a batch.
    assert 2 * TICK_SECONDS / BATCH_CPU_SECONDS < 0.05


def test_summary_pools_rounds_so_a_gc_lump_is_paid_once_not_dropped() -> None:
    # Four quiet rounds and one with a 1 s lump (a GC cycle): a median would report 2 ms.
    quiet = Batch(100, apiserver=0.15, etcd=0.05, wall=0.3)
    lump = Batch(100, apiserver=1.15, etcd=0.05, wall=0.8)
    s = summarize([quiet, quiet, lump, quiet, quiet])
    assert s["apiserverMs"] == pytest.approx(3.5)  # (4 x 0.15 + 1.15) s / 500
    assert s["etcdMs"] == pytest.approx(0.5)
    assert s["serverMs"] == pytest.approx(4.0)
    assert s["medianRoundServerMs"] == pytest.approx(2.0)
    assert s["range"]["serverMs"] == [2.0, 12.0]
    assert s["wallMs"] == pytest.approx(4.0)
    assert s["requests"] == [100] * 5
    assert s["tickShare"] == pytest.approx(2 * TICK_SECONDS / 0.2, abs=1e-3)
    assert len(s["perRound"]) == 5


def test_parse_counter_reads_one_unlabelled_sample() -> None:
    text = (
        "# TYPE go_memstats_alloc_bytes_total counter\n"
        "go_memstats_alloc_bytes_total 8.54934776e+08\n"
        "go_memstats_alloc_bytes_total_other 1\n"
        'apiserver_request_total{verb="GET"} 3\n'
    )
    assert parse_counter(text, "go_memstats_alloc_bytes_total") == 854934776.0
    assert parse_counter(text, "go_memstats_mallocs_total") is None
    assert parse_counter(text, "apiserver_request_total") is None  # labelled: not ours


def test_summary_pools_allocation_only_when_every_round_has_it() -> None:
    with_alloc = [Batch(100, 0.2, 0.05, 0.3, allocated=100 * 2048.0)] * 2
    s = summarize([*with_alloc, Batch(50, 0.2, 0.05, 0.3, allocated=50 * 4096.0)])
    assert s["apiserverAllocKiB"] == pytest.approx(2.4)  # (400 + 200) KiB / 250
    assert s["apiserverAllocKiBRange"] == [2.0, 4.0]
    assert "apiserverAllocKiB" not in summarize([*with_alloc, Batch(100, 0.2, 0.05, 0.3)])


def test_verdict_needs_every_round_and_more_than_the_ticks() -> None:
    assert verdict(0.5, [0.3, 0.6, 0.4], 0.1) == "lower in every round"
    assert verdict(-0.5, [-0.3, -0.6, -0.4], 0.1) == "higher in every round"
    assert verdict(0.5, [0.3, -0.1, 0.9], 0.1).startswith("no difference")
    assert verdict(0.05, [0.04, 0.06], 0.1).startswith("no difference")  # below the ticks
    with pytest.raises(ValueError, match="no rounds"):
        verdict(0.0, [], 0.1)


def test_alloc_ratio_is_get_put_over_our_patch_when_both_were_read() -> None:
    kinds = {"get+put": {"apiserverAllocKiB": 300.0}, "patch": {"apiserverAllocKiB": 200.0}}
    assert alloc_ratio(kinds, "patch") == 1.5
    assert alloc_ratio({"get+put": {}, "patch": {"apiserverAllocKiB": 200.0}}, "patch") is None


def test_ceiling_counts_the_baselines_client_and_server_over_our_server_cpu() -> None:
    assert ceiling(patch_ms=5.0, get_put_ms=10.0) == 2.0
    assert ceiling(patch_ms=5.0, get_put_ms=10.0, baseline_client_ms=5.0) == 3.0
    assert ceiling(patch_ms=0.0, get_put_ms=10.0) is None


def _kind(server: float) -> dict[str, Any]:
    return {
        "apiserverMs": server - 1.0,
        "etcdMs": 1.0,
        "serverMs": server,
        "apiserverAllocKiB": server * 100,
        "apiserverAllocKiBRange": [server * 99, server * 102],
        "range": {"apiserverMs": [1.0, 2.0], "etcdMs": [1.0, 1.0], "serverMs": [2.0, 3.0]},
        "tickShare": 0.02,
    }


def _row(plugin: str, obj: str) -> dict[str, Any]:
    return {
        "plugin": plugin,
        "object": obj,
        "kinds": {k: _kind(s) for k, s in zip(KINDS, (2.0, 5.0, 4.0, 6.0, 10.0), strict=True)},
        "oursKind": "patch",
        "oursQuery": "fieldManager=canary-routers",
        "patchOps": 2,
        "patchBytes": 180,
        "getPutPerStep": {"gets": 2.0, "writes": 1.0},
        "getPutOverPatch": 2.0,
        "getPutOverPatchAlloc": 1.5,
        "getPutOverPatchMedianRound": 1.8,
        "ignoreSavesApiserverMs": {
            "pooled": 1.0,
            "perRound": [0.5, 1.5],
            "resolution": 0.1,
            "verdict": "lower in every round",
            "allocKiB": 12.5,
        },
    }


def _section() -> dict[str, Any]:
    return {
        "rows": [_row("nginx", "Ingress 3 paths"), _row("nginx", "Ingress 300 paths")],
        "rounds": 5,
        "idleCpuMsPerSecond": {"kube-apiserver": 12.0, "etcd": 3.0},
        "tickMs": 10.0,
        "batchCpuMs": 600,
    }


def test_ceilings_use_the_baselines_client_cpu_from_the_same_run_per_n() -> None:
    section = _section()
    throughput = {
        "rows": [
            {"plugin": "nginx", "object": "Ingress 3 paths", "driver": d, "rollouts": n}
            | {"cpuMsPerStep": {"client": c, "apiserver": 9.0, "etcd": 1.0}}
            for d, n, c in (
                ("get+put", 100, 5.0),
                ("get+put", 500, 7.5),
                ("ours-live", 100, 1.0),  # ours: not the baseline's client
            )
        ]
    }
    add_ceilings(section, throughput)
    typical, large = section["rows"]
    assert typical["ceiling"] == {
        "serverOnly": 2.0,
        "withBaselineClient": [
            {"rollouts": 100, "baselineClientMs": 5.0, "ceiling": 3.0},
            {"rollouts": 500, "baselineClientMs": 7.5, "ceiling": 3.5},
        ],
    }
    # Throughput does not step the large object: server only.
    assert large["ceiling"] == {"serverOnly": 2.0, "withBaselineClient": []}


def test_render_shows_the_cost_ceiling_and_field_validation_tables_in_the_readme() -> None:
    section = _section()
    add_ceilings(section, None)
    results = {
        "date": "2026-12-06 17:00 UTC",
        "mode": "full",
        "seconds": 200.0,
        "machine": {
            "nproc": 2,
            "cpu": "test",
            "memoryGiB": 1,
            "implementation": "CPython",
            "python": "3.11",
            "kernel": "6",
            "loadAverageAtStart": [0.5],
        },
        "servercost": section,
    }
    text = report.render(results)
    assert "**Server cost per request**" in text
    assert (
        "| nginx | Ingress 3 paths | 1.00 + 1.00 = 2.00 (200 KiB) | 4.00 + 1.00 = 5.00 (500 KiB) |"
        in text
    )
    assert "2.0x (server only)" in text
    assert "CPU-bound" in text
    assert "| 1.00 [0.50–1.50] | 0.1 | 12.5 KiB (+2.5%) | lower in every round |" in text
    assert "| 2.0 | 1.8 | 1.5 | not measured (0) | 2.0x (server only) |" in text
    assert "varies by ±1.5% between rounds (median over rows), at most ±1.5%" in text
    assert "by chance in 1 row of 16" in text
    assert report.evaluate(results) == []  # no new targets: issue 15 sets none for this
    readme = report.replace_section("# x\n", text)
    assert "**Throughput ceiling from server CPU**" in readme
