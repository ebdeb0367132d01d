"""The tokenizer's sample plan: every document has the same chance, and most parts are never read."""

from __future__ import annotations

from tokenizer.train import plan_sample


def test_parts_are_drawn_first_and_documents_keep_the_same_chance():
    parts = [f"s3://crawl/docs/part-{i:05d}.parquet" for i in range(10_000)]
    plan = plan_sample(parts, corpus_bytes=10**12, sample_bytes=10**9, seed=0)
    assert plan.fraction == 1e-3
    assert 100 < len(plan.parts) < 230  # 16 times the budget's share of 10,000 parts: 160
    doc_chance = plan.threshold / 2**64
    assert abs(doc_chance * len(plan.parts) / len(parts) - 1e-3) < 2.5e-4  # part chance x document chance
    moved = plan_sample([p.replace("s3://crawl", "/mnt") for p in parts], 10**12, 10**9, seed=0)
    assert [p.rsplit("/", 1)[1] for p in moved.parts] == [p.rsplit("/", 1)[1] for p in plan.parts]
    assert plan_sample(parts, 10**12, 10**9, seed=1).parts != plan.parts


def test_a_small_corpus_reads_every_part():
    parts = [f"part-{i}.parquet" for i in range(4)]
    tiny = plan_sample(parts, corpus_bytes=10**9, sample_bytes=10**6, seed=0)
    assert tiny.parts == parts and tiny.threshold == int(1e-3 * 2**64)  # 64 parts' worth: all four
    whole = plan_sample(parts, corpus_bytes=10**6, sample_bytes=10**9, seed=0)
    assert whole.parts == parts and whole.threshold is None and whole.fraction == 1.0
