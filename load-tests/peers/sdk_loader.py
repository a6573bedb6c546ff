#!/usr/bin/env python3
"""Peer: a loader written on the official Python SDK the way its documentation and samples show
(azure-digitaltwins-core, asyncio client): models in one call, then twins, then relationships,
each wave through asyncio.gather under a semaphore, with the SDK's default retry policy (which
retries 429 and 5xx with its own backoff). Not tuned against the mock.

    sdk_loader.py <endpoint> <fleet.ndjson>

Reads the Import-Jobs NDJSON file (sections Models, Twins, Relationships). Prints what failed on
stderr; the suite counts what landed from the mock's side.
"""

import asyncio
import json
import sys
import time

from azure.core.credentials import AccessToken
from azure.digitaltwins.core.aio import DigitalTwinsClient

# The samples' usual bound on concurrent calls.
CONCURRENCY = 50


class StaticToken:
    """The mock accepts any bearer token; a real run would use DefaultAzureCredential."""

    async def get_token(self, *scopes, **kwargs):
        return AccessToken("peer", int(time.time()) + 3600)

    async def close(self):
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *a):
        pass


def read(path):
    models, twins, rels, section = [], [], [], None
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        item = json.loads(line)
        if "Section" in item:
            section = item["Section"]
        elif section == "Models":
            models.append(item)
        elif section == "Twins":
            twins.append(item)
        elif section == "Relationships":
            rels.append(item)
    return models, twins, rels


async def main(endpoint, path):
    models, twins, rels = read(path)
    failed = 0
    async with DigitalTwinsClient(endpoint, StaticToken()) as client:
        await client.create_models(models)
        sem = asyncio.Semaphore(CONCURRENCY)

        async def guarded(coro):
            nonlocal failed
            async with sem:
                try:
                    await coro
                except Exception as e:  # the sample logs and goes on
                    failed += 1
                    print(f"failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)

        await asyncio.gather(*(guarded(client.upsert_digital_twin(t["$dtId"], t)) for t in twins))
        await asyncio.gather(*(guarded(client.upsert_relationship(r["$dtId"], r["$relationshipId"],
                                                                   {k: v for k, v in r.items() if k != "$dtId"}))
                               for r in rels))
    print(f"done: {len(models)} models, {len(twins)} twins, {len(rels)} relationships, {failed} failed", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
