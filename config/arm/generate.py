#!/usr/bin/env python3
"""Writes config/arm/twinload.json, the ARM template that deploys twinload's Data Factory side and
Batch pool, from the files it deploys:

    python3 config/arm/generate.py          # run after changing config/adf/ or config/batch/pool.json
    python3 config/arm/generate.py OUT.json # writes elsewhere (tests/deploy_files.rs compares)

config/adf/ (ADF's git layout: credential, linkedService, dataset, pipeline) and
config/batch/pool.json stay the one place where the factory and the pool are described; this
script wraps them in ARM resources and replaces their `<...>` placeholders with template
parameters or with what the deployed resources report (`reference(...)`). tests/deploy_files.rs
checks that the committed template is this script's output for the committed files and that
every expression in it resolves.

Resources: the user-assigned managed identity (the pool runs twinload as it; the factory signs in
to Batch and Key Vault with it), the factory (with that identity), its credential, linked services, datasets
and pipelines, the Batch pool on an existing Batch account, and the Blob containers for the
resource folder, the ledgers and the archive in an existing storage account. The Key Vault, the
storage account and the Batch account are expected to exist (README, "Deploying the pipeline").
One identity does everything: the factory reaches Batch and Key Vault with it (credential
TwinloadIdentity), and twinload on the nodes reaches ADT and Storage with it.
"""
import json
import re
import sys
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CONFIG = ROOT / "config"
OUT = CONFIG / "arm" / "twinload.json"

FACTORY_API = "2018-06-01"
IDENTITY_API = "2023-01-31"
BATCH_API = "2024-07-01"
STORAGE_API = "2023-05-01"
KEYVAULT_API = "2023-07-01"

# Every placeholder string of config/adf and config/batch/pool.json, and what it becomes.
PLACEHOLDERS = OrderedDict([
    ("https://<instance>.api.<region>.digitaltwins.azure.net", "[parameters('adtEndpoint')]"),
    ("https://<storage-account>.blob.core.windows.net/",
     f"[reference(variables('storageAccountId'), '{STORAGE_API}').primaryEndpoints.blob]"),
    ("<user-assigned-identity-client-id>", f"[reference(variables('identityId'), '{IDENTITY_API}').clientId]"),
    ("https://<batch-account>.<region>.batch.azure.com",
     f"[concat('https://', reference(variables('batchAccountId'), '{BATCH_API}').accountEndpoint)]"),
    ("<batch-account>", "[parameters('batchAccountName')]"),
    ("https://<key-vault-name>.vault.azure.net/", f"[reference(variables('keyVaultId'), '{KEYVAULT_API}').vaultUri]"),
    ("/subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<identity-name>",
     "[variables('identityId')]"),
])
PLACEHOLDER = re.compile(r"<[a-z][a-z-]*>")

# config/adf folder, ARM child type of the factory.
KINDS = [("credential", "credentials"), ("linkedService", "linkedservices"), ("dataset", "datasets"),
         ("pipeline", "pipelines")]
REFERENCE_KINDS = {"CredentialReference": "credentials", "LinkedServiceReference": "linkedservices",
                   "DatasetReference": "datasets"}


def load(path):
    return json.loads(path.read_text(), object_pairs_hook=OrderedDict)


def armify(value, where):
    """The value as ARM reads it: placeholders replaced, a literal `[` escaped as `[[`."""
    if isinstance(value, str):
        if value in PLACEHOLDERS:
            return PLACEHOLDERS[value]
        if PLACEHOLDER.search(value):
            sys.exit(f"generate.py: {where}: no template value for the placeholder in {value!r}")
        return "[" + value if value.startswith("[") else value
    if isinstance(value, list):
        return [armify(v, where) for v in value]
    if isinstance(value, dict):
        return OrderedDict((armify(k, where), armify(v, where)) for k, v in value.items())
    return value


def references(value, out):
    """(ARM child type, name) of every credential, linked service and dataset a document names."""
    if isinstance(value, dict):
        kind = REFERENCE_KINDS.get(value.get("type"))
        if kind and isinstance(value.get("referenceName"), str):
            out.add((kind, value["referenceName"]))
        for v in value.values():
            references(v, out)
    elif isinstance(value, list):
        for v in value:
            references(v, out)
    return out


def containers_the_pipelines_use():
    """The resource folder's, ledgers' and archive's containers: the pipelines' defaults, which
    must agree across pipelines."""
    found = {}
    for path in sorted((CONFIG / "adf" / "pipeline").glob("*.json")):
        params = load(path)["properties"]["parameters"]
        named = {"resourceFolder": params["resourceFolder"]["defaultValue"].split("/")[0],
                 "ledgerContainer": params["ledgerContainer"]["defaultValue"],
                 "archiveContainer": params["archiveContainer"]["defaultValue"]}
        for key, container in named.items():
            if found.setdefault(key, container) != container:
                sys.exit(f"generate.py: {path.name}: {key} defaults to {container}, another pipeline to {found[key]}")
    return list(found.values())


def factory_child_id(kind, name):
    return f"[resourceId('Microsoft.DataFactory/factories/{kind}', parameters('factoryName'), '{name}')]"


def main():
    resources = [
        OrderedDict([
            ("type", "Microsoft.ManagedIdentity/userAssignedIdentities"),
            ("apiVersion", IDENTITY_API),
            ("name", "[parameters('identityName')]"),
            ("location", "[parameters('location')]"),
        ]),
        OrderedDict([
            ("type", "Microsoft.DataFactory/factories"),
            ("apiVersion", FACTORY_API),
            ("name", "[parameters('factoryName')]"),
            ("location", "[parameters('location')]"),
            ("identity", OrderedDict([
                ("type", "UserAssigned"),
                ("userAssignedIdentities", OrderedDict([("[variables('identityId')]", OrderedDict())])),
            ])),
            ("properties", OrderedDict()),
            ("dependsOn", ["[variables('identityId')]"]),
        ]),
    ]
    for folder, kind in KINDS:
        for path in sorted((CONFIG / "adf" / folder).glob("*.json")):
            doc = load(path)
            where = str(path.relative_to(ROOT))
            depends = ["[resourceId('Microsoft.DataFactory/factories', parameters('factoryName'))]"]
            depends += [factory_child_id(k, n) for k, n in sorted(references(doc["properties"], set()))]
            resources.append(OrderedDict([
                ("type", f"Microsoft.DataFactory/factories/{kind}"),
                ("apiVersion", FACTORY_API),
                ("name", f"[concat(parameters('factoryName'), '/{doc['name']}')]"),
                ("properties", armify(doc["properties"], where)),
                ("dependsOn", depends),
            ]))

    pool = load(CONFIG / "batch" / "pool.json")
    resources.append(OrderedDict([
        ("type", "Microsoft.Batch/batchAccounts/pools"),
        ("apiVersion", BATCH_API),
        ("name", f"[concat(parameters('batchAccountName'), '/{pool['name']}')]"),
        ("identity", armify(pool["identity"], "config/batch/pool.json")),
        ("properties", armify(pool["properties"], "config/batch/pool.json")),
        ("dependsOn", ["[variables('identityId')]"]),
    ]))
    for container in containers_the_pipelines_use():
        resources.append(OrderedDict([
            ("type", "Microsoft.Storage/storageAccounts/blobServices/containers"),
            ("apiVersion", STORAGE_API),
            ("name", f"[concat(parameters('storageAccountName'), '/default/{container}')]"),
            ("properties", OrderedDict([("publicAccess", "None")])),
        ]))

    def param(kind, description, default=None):
        p = OrderedDict([("type", kind)])
        if default is not None:
            p["defaultValue"] = default
        p["metadata"] = OrderedDict([("description", description)])
        return p

    template = OrderedDict([
        ("$schema", "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"),
        ("contentVersion", "1.0.0.0"),
        ("metadata", OrderedDict([("description", "Generated by config/arm/generate.py from config/adf/ and "
                                   "config/batch/pool.json; edit those and run the script again.")])),
        ("parameters", OrderedDict([
            ("factoryName", param("string", "The Data Factory to create or update.")),
            ("location", param("string", "Where the factory and the identity go.", "[resourceGroup().location]")),
            ("identityName", param("string", "The user-assigned managed identity to create or update: the pool runs twinload as it, the factory signs in to Batch with it.", "twinload-identity")),
            ("adtEndpoint", param("string", "The Azure Digital Twins instance, https://<instance>.api.<region>.digitaltwins.azure.net: the pipelines' default.")),
            ("batchAccountName", param("string", "An existing Batch account (in this resource group) for the pool twinload-pool.")),
            ("storageAccountName", param("string", "An existing storage account (in this resource group): inputs, resource folder, ledgers, archive.")),
            ("keyVaultName", param("string", "An existing Key Vault (in this resource group) holding the secret BatchStorage, the storage connection string.")),
        ])),
        ("variables", OrderedDict([
            ("identityId", "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', parameters('identityName'))]"),
            ("batchAccountId", "[resourceId('Microsoft.Batch/batchAccounts', parameters('batchAccountName'))]"),
            ("storageAccountId", "[resourceId('Microsoft.Storage/storageAccounts', parameters('storageAccountName'))]"),
            ("keyVaultId", "[resourceId('Microsoft.KeyVault/vaults', parameters('keyVaultName'))]"),
        ])),
        ("resources", resources),
        ("outputs", OrderedDict([
            ("identityClientId", OrderedDict([("type", "string"), ("value", f"[reference(variables('identityId'), '{IDENTITY_API}').clientId]")])),
            ("identityPrincipalId", OrderedDict([("type", "string"), ("value", f"[reference(variables('identityId'), '{IDENTITY_API}').principalId]")])),
        ])),
    ])
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    out.write_text(json.dumps(template, indent=4) + "\n")


if __name__ == "__main__":
    main()
