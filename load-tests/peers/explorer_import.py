#!/usr/bin/env python3
"""Peer: the approach of Azure Digital Twins Explorer's import, on the official Python SDK:
models sorted by dependency (extends and component schemas first) and uploaded in chunks, then
twins with 6 requests in flight, then relationships with 6 in flight; no rate control (a 429 is
left to the SDK's default retry policy, as the Explorer leaves it to the JS SDK's). Not tuned
against the mock.

    explorer_import.py <endpoint> <fleet.ndjson>
"""

import asyncio
import sys

from azure.digitaltwins.core.aio import DigitalTwinsClient

from sdk_loader import StaticToken, read

IN_FLIGHT = 6
MODEL_CHUNK = 100


def dependencies(model):
    deps = set()
    ext = model.get("extends", [])
    deps.update([ext] if isinstance(ext, str) else ext)
    for c in model.get("contents", []):
        if c.get("@type") == "Component" and isinstance(c.get("schema"), str):
            deps.add(c["schema"])
    return deps


def sort_models(models):
    by_id = {m["@id"]: m for m in models}
    done, order = set(), []

    def visit(mid, path=()):
        if mid in done or mid not in by_id or mid in path:
            return
        for d in dependencies(by_id[mid]):
            visit(d, path + (mid,))
        done.add(mid)
        order.append(by_id[mid])

    for m in models:
        visit(m["@id"])
    return order


async def pool(coros):
    sem = asyncio.Semaphore(IN_FLIGHT)
    failed = 0

    async def one(c):
        nonlocal failed
        async with sem:
            try:
                await c
            except Exception as e:
                failed += 1
                print(f"failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)

    await asyncio.gather(*(one(c) for c in coros))
    return failed


async def main(endpoint, path):
    models, twins, rels = read(path)
    async with DigitalTwinsClient(endpoint, StaticToken()) as client:
        ordered = sort_models(models)
        for i in range(0, len(ordered), MODEL_CHUNK):
            await client.create_models(ordered[i:i + MODEL_CHUNK])
        f1 = await pool(client.upsert_digital_twin(t["$dtId"], t) for t in twins)
        f2 = await pool(client.upsert_relationship(r["$dtId"], r["$relationshipId"],
                                                   {k: v for k, v in r.items() if k != "$dtId"}) for r in rels)
    print(f"done: {len(twins)} twins, {len(rels)} relationships, {f1 + f2} failed", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
