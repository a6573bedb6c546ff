"""The official Azure Digital Twins Python SDK against the mock ADT, over verified HTTPS.

Usage: sdk_check.py <mock url> <CA certificate PEM path> <bearer token>

Runs models, twins (with components and telemetry), relationships, queries and import jobs
through `azure-digitaltwins-core` as a user would,
and checks that every error the SDK raises carries the HTTP status and `error.code` the live
service returns (ADT-REFERENCE.md section 2). Prints one line per check; exits 0 only when all
pass. Run by tests/python_sdk.rs.
"""

import json
import socket
import sys
import time
import traceback

import requests

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
from azure.digitaltwins.core._generated.models import ImportJob

PREFIX = "dtmi:twinload:sdk"
THERMOSTAT = f"{PREFIX}:Thermostat;1"
SPACE = f"{PREFIX}:Space;1"
ROOM = f"{PREFIX}:Room;1"
FLOOR = f"{PREFIX}:Floor;1"
LAMP = f"{PREFIX}:Lamp;1"
NOT_A_DTMI = "thisIsNotAValidModelId"
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
    expect_error("get a model id that is not a DTMI", lambda: client.get_model(NOT_A_DTMI), 400, "InvalidArgument")
    expect_error("decommission a model id that is not a DTMI", lambda: client.decommission_model(NOT_A_DTMI), 400,
                 "InvalidArgument")
    expect_error("delete a model id that is not a DTMI", lambda: client.delete_model(NOT_A_DTMI), 400,
                 "InvalidArgument")
    deleting_a_model_twins_use(client)

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

    components_and_telemetry(client, url, ca_path, token)

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

    import_jobs(url, ca_path, token)


def deleting_a_model_twins_use(client):
    """Live ADT deletes a model that twins still use; only other models hold one back."""
    lamp = {"@id": LAMP, "@type": "Interface", "@context": CONTEXT,
            "contents": [{"@type": "Property", "name": "on", "schema": "boolean"}]}
    client.create_models([lamp])
    client.upsert_digital_twin("lamp1", {"$metadata": {"$model": LAMP}, "on": False})
    client.delete_model(LAMP)
    check(True, "delete_model of a model a twin uses")
    expect_error("get the deleted model", lambda: client.get_model(LAMP), 404, "ModelNotFound",
                 ResourceNotFoundError)
    check(client.get_digital_twin("lamp1")["$metadata"]["$model"] == LAMP,
          "a twin of a deleted model stays readable")
    client.update_digital_twin("lamp1", [{"op": "replace", "path": "/on", "value": True}])
    check(client.get_digital_twin("lamp1")["on"] is True, "a twin of a deleted model stays patchable")
    expect_error("a new twin of a deleted model",
                 lambda: client.upsert_digital_twin("lamp2", {"$metadata": {"$model": LAMP}}), 400,
                 "ValidationFailed")
    client.create_models([lamp])
    check(client.get_model(LAMP).id == LAMP, "the deleted model's id can be uploaded again")
    client.delete_digital_twin("lamp1")
    expect_error("get the deleted twin of the deleted model", lambda: client.get_digital_twin("lamp1"), 404,
                 "DigitalTwinNotFound", ResourceNotFoundError)
    client.delete_model(LAMP)


def components_and_telemetry(client, url, ca_path, token):
    """`room1` has the component `thermostat` (a Thermostat: `setpoint`, a double)."""
    component = client.get_component("room1", "thermostat")
    check(component.get("setpoint") == 21.5 and "$lastUpdateTime" in component.get("$metadata", {})
          and "name" not in component, "get_component returns the component's properties and $metadata")
    before = client.get_digital_twin("room1")["$etag"]
    client.update_component("room1", "thermostat", [{"op": "replace", "path": "/setpoint", "value": 23.0}])
    after = client.get_digital_twin("room1")
    check(after["thermostat"]["setpoint"] == 23.0 and after["$etag"] != before,
          "update_component patches the component and moves the twin's etag")
    expect_error("get a component the model does not declare", lambda: client.get_component("room1", "nope"),
                 404, "ComponentNotFound", ResourceNotFoundError)
    expect_error("get a component of a missing twin", lambda: client.get_component("nobody", "thermostat"),
                 404, "DigitalTwinNotFound", ResourceNotFoundError)
    setpoint = [{"op": "replace", "path": "/setpoint", "value": 19.0}]
    expect_error("update_component with a stale etag",
                 lambda: client.update_component("room1", "thermostat", setpoint, etag=before,
                                                 match_condition=MatchConditions.IfNotModified),
                 412, "PreconditionFailed", ResourceModifiedError)
    expect_error("update_component of a missing component",
                 lambda: client.update_component("room1", "nope", setpoint), 404, "ComponentNotFound",
                 ResourceNotFoundError)
    expect_error("update_component with an op other than add/replace/remove",
                 lambda: client.update_component("room1", "thermostat",
                                                 [{"op": "move", "from": "/setpoint", "path": "/x"}]),
                 400, "JsonPatchInvalid")
    expect_error("update_component with an empty op",
                 lambda: client.update_component("room1", "thermostat", [{"op": "", "path": "/setpoint"}]),
                 400, "JsonPatchInvalid")
    unknown = expect_error("update_component of a property the component does not declare",
                           lambda: client.update_component("room1", "thermostat",
                                                           [{"op": "add", "path": "/humidity", "value": 1}]),
                           400, "ValidationFailed")
    details = [d.message for d in unknown.error.details] if unknown is not None else []
    check(details == ["humidity does not appear on the DTDL for thermostat."],
          f"ValidationFailed names the undeclared property ({details})")
    wrong = expect_error("update_component with a value of the wrong type",
                         lambda: client.update_component("room1", "thermostat",
                                                         [{"op": "replace", "path": "/setpoint", "value": "warm"}]),
                         400, "ValidationFailed")
    details = [d.message for d in wrong.error.details] if wrong is not None else []
    check(details == ["Expected value of type double for setpoint on thermostat."],
          f"ValidationFailed names the expected type ({details})")
    try:
        client.update_component("room1", "thermostat", {"op": "replace", "path": "/setpoint", "value": 1.0})
        check(False, "update_component with a body that is not an array is refused")
    except HttpResponseError as e:
        code = e.error.code if e.error is not None else None
        check(e.status_code == 400 and code is None,
              f"a component patch that is not an array: ASP.NET's 400 without error.code ({e.status_code} {code})")
    check(client.get_digital_twin("room1")["thermostat"]["setpoint"] == 23.0, "refused patches changed nothing")

    client.publish_telemetry("room1", {"temperature": 20.5})
    client.publish_component_telemetry("room1", "thermostat", {"setpoint": 23.0})
    check(True, "publish_telemetry and publish_component_telemetry (the SDK sends a Message-Id)")
    expect_error("publish_telemetry for a missing twin", lambda: client.publish_telemetry("nobody", {"t": 1}),
                 404, "DigitalTwinNotFound", ResourceNotFoundError)
    expect_error("publish_component_telemetry for a missing component",
                 lambda: client.publish_component_telemetry("room1", "nope", {"t": 1}), 404, "ComponentNotFound",
                 ResourceNotFoundError)
    # The SDK always sends a Message-Id; without one (REST) it is a 400.
    for path in ["/digitaltwins/room1/telemetry", "/digitaltwins/room1/components/thermostat/telemetry"]:
        answer = requests.post(f"{url}{path}?api-version=2023-10-31", json={"t": 1}, verify=ca_path, timeout=30,
                               headers={"Authorization": f"Bearer {token}"})
        code = error_code(answer.content)
        check(answer.status_code == 400 and code == "InvalidArgument",
              f"telemetry without Message-Id ({path}): {answer.status_code} {code}")


def error_code(body):
    """`error.code` of a body, also when the error object comes inside a JSON string."""
    try:
        parsed = json.loads(body)
        if isinstance(parsed, str):
            parsed = json.loads(parsed)
        return parsed["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def import_jobs(url, ca_path, token):
    """The Import Jobs calls of the SDK's generated client (the convenience client has none)."""
    # Retries off: the SDK would wait out the 429 this checks. The jobs API allows 1 request/s.
    client = DigitalTwinsClient(url, StaticToken(token), connection_verify=ca_path, retry_total=0)
    jobs = client._client.import_jobs  # pylint: disable=protected-access

    def paced(call):
        time.sleep(1.1)
        return call()

    expect_error("get an unknown import job", lambda: paced(lambda: jobs.get_by_id("nope")), 404, "JobNotFound",
                 ResourceNotFoundError)
    # A blob server that accepts connections and never answers: the job runs (holding the
    # instance's one bulk-job slot) for as long as this socket stays open.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    blob = f"http://127.0.0.1:{silent.getsockname()[1]}/jobs"
    try:
        expect_error("an import job whose inputBlobUri is not a URI",
                     lambda: paced(lambda: jobs.add("bad-uri", ImportJob(input_blob_uri="invalidUri",
                                                                          output_blob_uri=f"{blob}/out.ndjson"))),
                     400, "InvalidArgument")
        job = paced(lambda: jobs.add("first", ImportJob(input_blob_uri=f"{blob}/in.ndjson",
                                                        output_blob_uri=f"{blob}/out.ndjson")))
        check(job.id == "first" and job.status in ("notstarted", "running"), f"import_jobs.add ({job.status})")
        expect_error("an import job id already used",
                     lambda: paced(lambda: jobs.add("first", ImportJob(input_blob_uri=f"{blob}/in.ndjson",
                                                                       output_blob_uri=f"{blob}/out.ndjson"))),
                     409, "JobIdAlreadyExists", ResourceExistsError)
        try:
            paced(lambda: jobs.add("second", ImportJob(input_blob_uri=f"{blob}/in.ndjson",
                                                       output_blob_uri=f"{blob}/out2.ndjson")))
            check(False, "a second import job while one runs is refused")
        except HttpResponseError as e:
            body = e.response.body() if e.response is not None else b""
            retry_after = e.response.headers.get("Retry-After") if e.response is not None else None
            check(e.status_code == 429 and error_code(body) == "TooManyRequests"
                  and b"Cannot start another job while one is in progress" in body and retry_after is not None,
                  f"a second import job while one runs: {e.status_code} {error_code(body)} Retry-After {retry_after}")
    finally:
        silent.close()
    reset = requests.post(f"{url}/_mock/reset", verify=ca_path, timeout=30)
    check(reset.status_code == 204, f"POST /_mock/reset ({reset.status_code})")
    expect_error("an import job after the mock's reset", lambda: paced(lambda: jobs.get_by_id("first")), 404,
                 "JobNotFound", ResourceNotFoundError)
    listed = paced(lambda: list(jobs.list()))
    check(listed == [], f"the mock's reset forgets every import job ({len(listed)} left)")


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
