#!/usr/bin/env python3
"""Changes a share of a fleet's twins (their "name" property) in an Import-Jobs NDJSON file.

usage: change.py <in.ndjson> <out.ndjson> <share> [seed]
Prints how many twins changed."""
import json
import random
import sys

src, dst, share = sys.argv[1], sys.argv[2], float(sys.argv[3])
rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
section, changed = "", 0
with open(src) as f, open(dst, "w") as out:
    for line in f:
        if not line.strip():
            continue
        doc = json.loads(line)
        if "Section" in doc:
            section = doc["Section"]
        elif section == "Twins" and rng.random() < share:
            doc["name"] = f"changed {doc['$dtId']}"
            changed += 1
            line = json.dumps(doc, separators=(",", ":")) + "\n"
        out.write(line)
print(changed)
