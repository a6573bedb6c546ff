"""The official Azure Digital Twins Python SDK against the mock ADT, over verified HTTPS.

Usage: sdk_check.py <mock url> <CA certificate PEM path> <bearer token>

Runs models, twins, relationships and queries through `azure-digitaltwins-core` as a user would,
and checks that every error the SDK raises carries the HTTP status and `error.code` the live
service returns (ADT-REFERENCE.md section 2). Prints one line per check; exits 0 only when all
pass. Run by tests/python_sdk.rs.
"""

import sys
import time
import traceback

from azure.core import MatchConditions
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.digitaltwins.core import DigitalTwinsClient

PREFIX = "dtmi:twinload:sdk"
THERMOSTAT = f"{PREFIX}:Thermostat;1"
SPACE = f"{PREFIX}:Space;1"
ROOM = f"{PREFIX}:Room;1"
FLOOR = f"{PREFIX}:Floor;1"
CONTEXT = "dtmi:dtdl:context;2"
# Twins created for the paged query; more than one page at QUERY_PAGE items per page.
EXTRA_ROOMS = 5
QUERY_PAGE = 2


class StaticToken:
    """A credential that always hands out the same token (the mock cannot check Entra tokens)."""

    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self._token, int(time.time()) + 3600)


FAILURES = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        FAILURES.append(what)


def expect_error(what, call, status, code, exception=HttpResponseError):
    """Runs `call`, which must raise `exception` carrying `status` and ADT's `error.code`."""
    try:
        call()
    except exception as e:
        got_code = e.error.code if e.error is not None else None
        check(
            e.status_code == status and got_code == code,
            f"{what}: {type(e).__name__} {e.status_code} {got_code} (want {status} {code})",
        )
        return e
    except Exception as e:  # the wrong exception type is a failure, not a crash
        check(False, f"{what}: raised {type(e).__name__} ({e}), want {exception.__name__} {status} {code}")
        return None
    check(False, f"{what}: no error, want {exception.__name__} {status} {code}")
    return None


def models():
    thermostat = {
        "@id": THERMOSTAT, "@type": "Interface", "@context": CONTEXT, "displayName": "Thermostat",
        "contents": [{"@type": "Property", "name": "setpoint", "schema": "double"}],
    }
    space = {
        "@id": SPACE, "@type": "Interface", "@context": CONTEXT, "displayName": "Space",
        "contents": [{"@type": "Property", "name": "name", "schema": "string"}],
    }
    room = {
        "@id": ROOM, "@type": "Interface", "@context": CONTEXT, "displayName": "Room", "extends": SPACE,
        "contents": [
            {"@type": "Property", "name": "temperature", "schema": "double"},
            {"@type": "Component", "name": "thermostat", "schema": THERMOSTAT},
            {"@type": "Relationship", "name": "adjacentTo", "target": ROOM,
             "properties": [{"@type": "Property", "name": "distance", "schema": "double"}]},
        ],
    }
    floor = {
        "@id": FLOOR, "@type": "Interface", "@context": CONTEXT, "displayName": "Floor", "extends": SPACE,
        "contents": [{"@type": "Relationship", "name": "contains", "target": ROOM}],
    }
    # The referencing models first: order within a batch does not matter to ADT.
    return [floor, room, space, thermostat]


def room_twin(name, temperature):
    return {
        "$metadata": {"$model": ROOM},
        "name": name,
        "temperature": temperature,
        "thermostat": {"$metadata": {}, "setpoint": 21.5},
    }


def run(url, ca_path, token):
    client = DigitalTwinsClient(url, StaticToken(token), connection_verify=ca_path)

    # --- TLS and auth are real -------------------------------------------------------------
    unverified = DigitalTwinsClient(url, StaticToken(token), retry_total=0)
    try:
        unverified.get_model(SPACE)
        check(False, "a client that does not trust the mock's CA is refused")
    except ServiceRequestError:
        check(True, "a client that does not trust the mock's CA is refused")
    wrong_token = DigitalTwinsClient(url, StaticToken(token + "-wrong"), connection_verify=ca_path)
    expect_error("wrong bearer token", lambda: wrong_token.get_model(SPACE), 401, "Unauthorized",
                 ClientAuthenticationError)

    # --- Models ----------------------------------------------------------------------------
    created = client.create_models(models())
    check(sorted(m.id for m in created) == sorted([FLOOR, ROOM, SPACE, THERMOSTAT]),
          "create_models uploads a batch with extends and a component")
    expect_error("upload an existing model", lambda: client.create_models([models()[1]]), 409,
                 "ModelIdAlreadyExists", ResourceExistsError)
    orphan = {"@id": f"{PREFIX}:Orphan;1", "@type": "Interface", "@context": CONTEXT,
              "extends": f"{PREFIX}:Missing;1"}
    expect_error("model extends a model that is nowhere", lambda: client.create_models([orphan]), 400,
                 "DTDLParserError")
    room_model = client.get_model(ROOM, include_model_definition=True)
    check(room_model.id == ROOM and room_model.model.get("@id") == ROOM and not room_model.decommissioned,
          "get_model with the definition")
    listed = {m.id for m in client.list_models()}
    check({FLOOR, ROOM, SPACE, THERMOSTAT} <= listed, f"list_models lists the uploaded models ({len(listed)})")
    expect_error("get a missing model", lambda: client.get_model(f"{PREFIX}:Nope;1"), 404, "ModelNotFound",
                 ResourceNotFoundError)

    # --- Twins -----------------------------------------------------------------------------
    floor = client.upsert_digital_twin("floor1", {"$metadata": {"$model": FLOOR}, "name": "Floor 1"})
    check(floor.get("$dtId") == "floor1" and str(floor.get("$etag", "")).startswith('W/"'),
          "upsert_digital_twin returns the twin with a weak etag")
    client.upsert_digital_twin("room1", room_twin("Room 1", 20.0))
    client.upsert_digital_twin("room2", room_twin("Room 2", 19.0))
    room1 = client.get_digital_twin("room1")
    check(room1.get("temperature") == 20.0 and room1["$metadata"]["$model"] == ROOM
          and room1.get("thermostat", {}).get("setpoint") == 21.5,
          "get_digital_twin returns properties, model and component")
    client.update_digital_twin("room1", [{"op": "replace", "path": "/temperature", "value": 22.5}])
    room1_after = client.get_digital_twin("room1")
    check(room1_after.get("temperature") == 22.5, "update_digital_twin applies a JSON patch")
    check(room1_after["$etag"] != room1["$etag"], "an update changes the etag")
    expect_error("update with a stale etag",
                 lambda: client.update_digital_twin("room1", [{"op": "replace", "path": "/temperature", "value": 1.0}],
                                                    etag=room1["$etag"], match_condition=MatchConditions.IfNotModified),
                 412, "PreconditionFailed", ResourceModifiedError)
    expect_error("create-only upsert of an existing twin",
                 lambda: client.upsert_digital_twin("room1", room_twin("again", 1.0),
                                                    match_condition=MatchConditions.IfMissing),
                 412, "PreconditionFailed", ResourceExistsError)
    expect_error("twin whose model is not uploaded",
                 lambda: client.upsert_digital_twin("ghost", {"$metadata": {"$model": f"{PREFIX}:Nope;1"}}),
                 400, "ValidationFailed")
    expect_error("get a missing twin", lambda: client.get_digital_twin("nobody"), 404, "DigitalTwinNotFound",
                 ResourceNotFoundError)

    # --- Relationships ---------------------------------------------------------------------
    rel = client.upsert_relationship("floor1", "floor1-room1",
                                     {"$relationshipName": "contains", "$targetId": "room1"})
    check(rel.get("$relationshipId") == "floor1-room1" and rel.get("$sourceId") == "floor1"
          and rel.get("$targetId") == "room1", "upsert_relationship returns the relationship")
    client.upsert_relationship("floor1", "floor1-room2", {"$relationshipName": "contains", "$targetId": "room2"})
    client.upsert_relationship("room1", "room1-room2",
                               {"$relationshipName": "adjacentTo", "$targetId": "room2", "distance": 3.0})
    client.update_relationship("room1", "room1-room2", [{"op": "replace", "path": "/distance", "value": 4.5}])
    check(client.get_relationship("room1", "room1-room2").get("distance") == 4.5,
          "update_relationship applies a JSON patch")
    paged = client.list_relationships("floor1", headers={"max-items-per-page": "1"})
    pages = [list(page) for page in paged.by_page()]
    check(sorted(r["$relationshipId"] for page in pages for r in page) == ["floor1-room1", "floor1-room2"],
          f"list_relationships follows nextLink across pages ({len(pages)} pages)")
    named = list(client.list_relationships("room1", relationship_id="adjacentTo"))
    check([r["$relationshipId"] for r in named] == ["room1-room2"], "list_relationships by relationship name")
    incoming = list(client.list_incoming_relationships("room2"))
    check(sorted((r.source_id, r.relationship_name) for r in incoming)
          == [("floor1", "contains"), ("room1", "adjacentTo")], "list_incoming_relationships")
    expect_error("relationship to a missing target",
                 lambda: client.upsert_relationship("floor1", "to-nowhere",
                                                    {"$relationshipName": "contains", "$targetId": "nobody"}),
                 404, "TargetDigitalTwinNotFound", ResourceNotFoundError)
    expect_error("relationship from a missing source",
                 lambda: client.upsert_relationship("nobody", "r", {"$relationshipName": "contains",
                                                                    "$targetId": "room1"}),
                 404, "DigitalTwinNotFound", ResourceNotFoundError)
    expect_error("upsert that moves an existing relationship to another target",
                 lambda: client.upsert_relationship("floor1", "floor1-room1",
                                                    {"$relationshipName": "contains", "$targetId": "room2"}),
                 400, "OperationNotAllowed")
    check(client.get_relationship("floor1", "floor1-room1")["$targetId"] == "room1",
          "a refused move leaves the relationship where it was")
    expect_error("relationship name not in the model",
                 lambda: client.upsert_relationship("floor1", "bad-name",
                                                    {"$relationshipName": "owns", "$targetId": "room1"}),
                 400, "InvalidRelationship")
    expect_error("create-only upsert of an existing relationship",
                 lambda: client.upsert_relationship("floor1", "floor1-room1",
                                                    {"$relationshipName": "contains", "$targetId": "room1"},
                                                    match_condition=MatchConditions.IfMissing),
                 412, "PreconditionFailed", ResourceExistsError)
    expect_error("delete a twin that has relationships", lambda: client.delete_digital_twin("room2"), 400,
                 "RelationshipsNotDeleted")
    expect_error("get a missing relationship", lambda: client.get_relationship("floor1", "nope"), 404,
                 "RelationshipNotFound", ResourceNotFoundError)

    # --- Query -----------------------------------------------------------------------------
    for i in range(EXTRA_ROOMS):
        client.upsert_digital_twin(f"extra{i}", room_twin(f"Extra {i}", 18.0 + i))
    expected = {"floor1", "room1", "room2"} | {f"extra{i}" for i in range(EXTRA_ROOMS)}
    query = f"SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('{SPACE}')"
    pages = [list(page) for page in
             client.query_twins(query, headers={"max-items-per-page": str(QUERY_PAGE)}).by_page()]
    found = sorted(t["$dtId"] for page in pages for t in page)
    check(found == sorted(expected) and len(pages) > 1,
          f"query_twins pages with continuationToken ({len(pages)} pages, {len(found)} twins)")
    rooms = sorted(t["$dtId"] for t in client.query_twins(f"SELECT * FROM DIGITALTWINS WHERE $metadata.$model = '{ROOM}'"))
    check(rooms == sorted(expected - {"floor1"}), "query by $metadata.$model")
    expect_error("a query that is not SQL", lambda: list(client.query_twins("FETCH everything")), 400,
                 "SqlQueryError")

    # --- Deletes and model lifecycle -------------------------------------------------------
    expect_error("delete a model other models extend", lambda: client.delete_model(SPACE), 409,
                 "ModelReferencesNotDeleted", ResourceExistsError)
    for source, rel_id in [("floor1", "floor1-room1"), ("floor1", "floor1-room2"), ("room1", "room1-room2")]:
        client.delete_relationship(source, rel_id)
    check(list(client.list_incoming_relationships("room2")) == [], "delete_relationship removes them")
    for twin in sorted(expected):
        client.delete_digital_twin(twin)
    expect_error("get a deleted twin", lambda: client.get_digital_twin("room1"), 404, "DigitalTwinNotFound",
                 ResourceNotFoundError)
    client.decommission_model(FLOOR)
    check(client.get_model(FLOOR).decommissioned is True, "decommission_model")
    client.delete_model(FLOOR)
    expect_error("get a deleted model", lambda: client.get_model(FLOOR), 404, "ModelNotFound",
                 ResourceNotFoundError)


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    url, ca_path, token = sys.argv[1:]
    try:
        run(url, ca_path, token)
    except Exception:  # an unexpected SDK error ends the run with its traceback
        traceback.print_exc()
        FAILURES.append("unexpected exception")
    print(f"{len(FAILURES)} failure(s)", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
