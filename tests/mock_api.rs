//! Black-box HTTP tests of the mock ADT's data plane: every row of ADT-REFERENCE.md §2 the mock
//! implements (status and `error.code`), and the success shapes (status codes, `ETag` and
//! `$etag`, paging by nextLink and continuationToken, query answers). Each test starts its own
//! mock on a free loopback port.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use twinload::limits::Limits;
use twinload::mock::store::{Store, StoreOptions};

mod harness {
    use twinload::limits::Limits;
    use twinload::mock::faults::FaultConfig;
    use twinload::mock::server::{self, MockConfig, MockHandle};
    use twinload::mock::store::{Store, StoreOptions};

    /// The real mock server (`server::start`) on a free loopback port, auth off, with the given
    /// limits and the eventual-consistency switches of `options`.
    pub struct TestMock {
        pub url: String,
        pub store: Store,
        _handle: MockHandle,
    }

    pub fn start(limits: Limits, options: StoreOptions) -> TestMock {
        let faults = FaultConfig {
            query_index_lag: options.query_index_lag,
            new_twin_invisible_for: options.new_twin_invisible_for,
            ..FaultConfig::default()
        };
        let handle = server::start(MockConfig::default().without_auth().with_limits(limits).with_faults(faults))
            .expect("the mock starts");
        TestMock { url: handle.url.clone(), store: handle.store().clone(), _handle: handle }
    }
}

use harness::TestMock;

const API: &str = "api-version=2023-10-31";

/// ADT's limits with rates raised, so these functional tests never meet a rate limit.
fn test_limits() -> Limits {
    Limits {
        create_delete_per_s: 1_000_000,
        patch_per_s: 1_000_000,
        read_per_s: 1_000_000,
        models_per_s: 1_000_000,
        query_per_s: 1_000_000,
        per_twin_writes_per_s: 1_000_000,
        per_twin_in_flight: 1_000_000,
        ..Limits::adt_default()
    }
}

fn start() -> TestMock {
    harness::start(test_limits(), StoreOptions::default())
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a refusal's status and `error.code`, and returns the message.
    fn refused(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "expected {status} {code}, got {} {}", self.status, self.body);
        assert_eq!(self.body["error"]["code"], code, "{}", self.body);
        assert_eq!(self.header("content-type"), Some("application/json; charset=utf-8"));
        self.body["error"]["message"].as_str().unwrap_or_default().to_string()
    }

    fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        &self.body
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(mock: &TestMock) -> Client {
        Client {
            http: twinload::http::client_builder(None).unwrap().timeout(Duration::from_secs(20)).build().unwrap(),
            base: mock.url.clone(),
        }
    }

    /// A request to `path` (with `?api-version=2023-10-31` appended).
    async fn send(&self, method: Method, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Answer {
        let separator = if path.contains('?') { '&' } else { '?' };
        self.raw(method, &format!("{}{path}{separator}{API}", self.base), body.map(|b| b.to_string()), headers).await
    }

    async fn raw(&self, method: Method, url: &str, body: Option<String>, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.http.request(method.clone(), url);
        let mut content_type_set = false;
        for (name, value) in headers {
            content_type_set |= name.eq_ignore_ascii_case("content-type");
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            if !content_type_set {
                let content_type =
                    if method == Method::PATCH { "application/json-patch+json" } else { "application/json" };
                request = request.header("content-type", content_type);
            }
            request = request.body(body);
        }
        let response = request.send().await.expect("the mock answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer { status, headers, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, &[]).await
    }
    async fn put(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::PUT, path, Some(body), &[]).await
    }
    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, Some(body), &[]).await
    }
    async fn patch(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::PATCH, path, Some(body), &[]).await
    }
    async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None, &[]).await
    }

    async fn query(&self, query: &str) -> Answer {
        self.post("/query", &json!({ "query": query })).await
    }

    async fn put_twin(&self, id: &str, model: &str, props: Value) -> Answer {
        let mut body = props;
        body["$metadata"] = json!({ "$model": model });
        self.put(&twin_path(id), &body).await
    }

    async fn put_relationship(&self, source: &str, id: &str, target: &str, name: &str) -> Answer {
        self.put(&rel_path(source, id), &json!({"$targetId": target, "$relationshipName": name})).await
    }
}

/// Follows `nextLink`s from `path`, asking for `page_size` items a page; every item, in order.
async fn all_pages(client: &Client, path: &str, page_size: usize) -> Vec<Value> {
    let size = page_size.to_string();
    let headers = [("max-items-per-page", size.as_str())];
    let mut items = Vec::new();
    let mut answer = client.send(Method::GET, path, None, &headers).await;
    for _ in 0..100 {
        let body = answer.ok(200).clone();
        let rows = body["value"].as_array().expect("a value array");
        assert!(rows.len() <= page_size, "a page holds at most max-items-per-page items");
        items.extend(rows.iter().cloned());
        match body["nextLink"].as_str() {
            None => return items,
            Some(link) => {
                assert!(link.starts_with(&client.base), "nextLink is an absolute URL of the mock: {link}");
                answer = client.raw(Method::GET, link, None, &headers).await;
            }
        }
    }
    panic!("{path}: more than 100 pages");
}

fn twin_path(id: &str) -> String {
    twinload::adt::paths::twin(id)
}

fn rel_path(source: &str, id: &str) -> String {
    twinload::adt::paths::relationship(source, id)
}

fn model_path(id: &str) -> String {
    twinload::adt::paths::model(id)
}

const ASSET: &str = "dtmi:test:Asset;1";
const VEHICLE: &str = "dtmi:test:Vehicle;1";
const ENGINE: &str = "dtmi:test:Engine;1";
const PART: &str = "dtmi:test:Part;1";
const WHEEL: &str = "dtmi:test:Wheel;1";
const DEPOT: &str = "dtmi:test:Depot;1";

/// A fleet's models: inheritance, a component, typed properties, relationships with and
/// without a target. The referencing models come first (order in a batch does not matter).
fn fleet_models() -> Value {
    json!([
        {"@id": VEHICLE, "@type": "Interface", "@context": "dtmi:dtdl:context;2", "displayName": "Vehicle", "extends": ASSET,
         "contents": [
            {"@type": "Property", "name": "speed", "schema": "double"},
            {"@type": "Property", "name": "mileage", "schema": "integer"},
            {"@type": "Property", "name": "status", "schema": {"@type": "Enum", "valueSchema": "string",
                "enumValues": [{"name": "active", "enumValue": "active"}, {"name": "retired", "enumValue": "retired"}]}},
            {"@type": "Property", "name": "pos", "schema": {"@type": "Object",
                "fields": [{"name": "lat", "schema": "double"}, {"name": "lon", "schema": "double"}]}},
            {"@type": "Component", "name": "engine", "schema": ENGINE},
            {"@type": "Relationship", "name": "hasPart", "target": PART,
                "properties": [{"@type": "Property", "name": "since", "schema": "string"}]},
            {"@type": "Relationship", "name": "parkedAt", "target": DEPOT}
         ]},
        {"@id": WHEEL, "@type": "Interface", "@context": "dtmi:dtdl:context;2", "extends": PART},
        {"@id": ASSET, "@type": "Interface", "@context": "dtmi:dtdl:context;2",
         "contents": [
            {"@type": "Property", "name": "name", "schema": "string"},
            {"@type": "Relationship", "name": "locatedIn"}
         ]},
        {"@id": ENGINE, "@type": "Interface", "@context": "dtmi:dtdl:context;2",
         "contents": [{"@type": "Property", "name": "rpm", "schema": "integer"}]},
        {"@id": PART, "@type": "Interface", "@context": "dtmi:dtdl:context;2", "extends": ASSET,
         "contents": [{"@type": "Property", "name": "partNo", "schema": "string"}]},
        {"@id": DEPOT, "@type": "Interface", "@context": "dtmi:dtdl:context;2", "description": {"en": "A depot", "de": "Ein Depot"},
         "contents": [{"@type": "Property", "name": "city", "schema": "string"}]}
    ])
}

async fn with_fleet_models(client: &Client) {
    client.post("/models", &fleet_models()).await.ok(201);
}

fn vehicle(name: &str) -> Value {
    json!({"name": name, "speed": 12.5, "engine": {"$metadata": {}, "rpm": 900}})
}

// ---------------------------------------------------------------------------------------------
// api-version

#[tokio::test]
async fn api_version_is_required_and_must_be_one_adt_serves() {
    let mock = start();
    let client = Client::new(&mock);
    let missing = client.raw(Method::GET, &format!("{}/models", mock.url), None, &[]).await;
    let message = missing.refused(400, "MissingApiVersionParameter");
    assert!(message.contains("api-version query parameter"), "{message}");
    let unknown =
        client.raw(Method::GET, &format!("{}/digitaltwins/x?api-version=2019-01-01", mock.url), None, &[]).await;
    let message = unknown.refused(400, "UnsupportedApiVersionValue");
    assert!(message.contains("2019-01-01") && message.contains("2023-10-31"), "{message}");
    // The api-version is checked before anything else: a missing twin with no version is a 400.
    client
        .raw(Method::DELETE, &format!("{}/digitaltwins/x", mock.url), None, &[])
        .await
        .refused(400, "MissingApiVersionParameter");
    client
        .raw(Method::PUT, &format!("{}/digitaltwins/x", mock.url), Some("not json".into()), &[])
        .await
        .refused(400, "MissingApiVersionParameter");
    // ADT's other stable versions are served too (the SDKs' defaults lag behind).
    let older = client.raw(Method::GET, &format!("{}/models?api-version=2020-10-31", mock.url), None, &[]).await;
    older.ok(200);
    client.get("/models").await.ok(200);
}

// ---------------------------------------------------------------------------------------------
// models

#[tokio::test]
async fn model_upload_answers_model_data_and_get_answers_the_definition_on_request() {
    let mock = start();
    let client = Client::new(&mock);
    let created = client.post("/models", &fleet_models()).await;
    let data = created.ok(201).as_array().expect("an array").clone();
    assert_eq!(created.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(data.len(), 6);
    assert_eq!(data[0]["id"], VEHICLE, "request order is kept");
    assert_eq!(data[0]["displayName"], json!({"en": "Vehicle"}));
    assert_eq!(data[0]["description"], json!({}));
    assert_eq!(data[0]["decommissioned"], false);
    assert!(data[0]["uploadTime"].as_str().unwrap().ends_with("+00:00"));
    assert!(data[0].get("model").is_none());
    assert_eq!(data[5]["description"], json!({"en": "A depot", "de": "Ein Depot"}));

    let got = client.get(&model_path(DEPOT)).await;
    assert_eq!(got.ok(200)["id"], DEPOT);
    assert!(got.body.get("model").is_none());
    let with_definition = client.get(&format!("{}?includeModelDefinition=true", model_path(DEPOT))).await;
    assert_eq!(with_definition.ok(200)["model"]["contents"][0]["name"], "city");
    let message = client.get(&model_path("dtmi:test:Nope;1")).await.refused(404, "ModelNotFound");
    assert!(message.contains("dtmi:test:Nope;1"));
    assert_eq!(mock.store.model_count(), 6);
}

#[tokio::test]
async fn a_batch_with_unresolved_references_is_refused_whole_and_counted_as_out_of_order() {
    let mock = start();
    let client = Client::new(&mock);
    let batch = json!([
        {"@id": "dtmi:test:A;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2", "extends": "dtmi:test:Missing;1",
         "contents": [{"@type": "Component", "name": "c", "schema": "dtmi:test:MissingToo;1"}]},
        {"@id": "dtmi:test:B;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2", "extends": "dtmi:test:Missing;1"},
        {"@id": "dtmi:test:C;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"}
    ]);
    let message = client.post("/models", &batch).await.refused(400, "DTDLParserError");
    assert!(message.starts_with("None of the models in this request could be created"), "{message}");
    assert!(message.contains("dtmi:test:Missing;1 (referenced in 2 places)"), "{message}");
    assert!(message.contains("dtmi:test:MissingToo;1 (referenced in 1 place)"), "{message}");
    assert_eq!(mock.store.model_count(), 0, "all or nothing: C was not uploaded either");
    assert_eq!(mock.store.order_violations_total(), 1);

    // The same references resolve against models already in the instance.
    client
        .post("/models", &json!([{"@id": "dtmi:test:Missing;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"},
                                  {"@id": "dtmi:test:MissingToo;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"}]))
        .await
        .ok(201);
    client.post("/models", &batch).await.ok(201);
    assert_eq!(mock.store.model_count(), 5);
    assert_eq!(mock.store.order_violations_total(), 1);
}

#[tokio::test]
async fn duplicate_models_are_409_listing_every_existing_id() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let again = json!([
        fleet_models()[2].clone(),
        fleet_models()[5].clone(),
        {"@id": "dtmi:test:New;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"}
    ]);
    let message = client.post("/models", &again).await.refused(409, "ModelIdAlreadyExists");
    assert!(message.contains(&format!("Some of the model ids already exist: {ASSET}, {DEPOT}")), "{message}");
    assert_eq!(mock.store.model_count(), 6, "the new model in the batch was not uploaded");
}

#[tokio::test]
async fn empty_oversized_and_malformed_model_batches_are_refused() {
    let mock = start();
    let client = Client::new(&mock);
    let message = client.post("/models", &json!([])).await.refused(400, "InvalidArgument");
    assert!(message.contains("models provided was empty"), "{message}");
    client.post("/models", &json!({"@id": "dtmi:x;1"})).await.refused(400, "InvalidArgument");

    let too_many: Vec<Value> = (0..=test_limits().max_models_per_call)
        .map(|i| json!({"@id": format!("dtmi:test:M{i};1"), "@type": "Interface", "@context": "dtmi:dtdl:context;2"}))
        .collect();
    client.post("/models", &Value::Array(too_many)).await.refused(400, "LimitExceeded");

    let bad_dtmi = json!([{"@id": "dtmi:test:bad-name;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"}]);
    assert!(client.post("/models", &bad_dtmi).await.refused(400, "DTDLParserError").contains("bad-name"));
    let command = json!([{"@id": "dtmi:test:Cmd;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2",
                          "contents": [{"@type": "Command", "name": "reboot"}]}]);
    client.post("/models", &command).await.refused(400, "DTDLParserError");
    let twice = json!([{"@id": "dtmi:test:T;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"},
                       {"@id": "dtmi:test:T;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"}]);
    client.post("/models", &twice).await.refused(400, "DTDLParserError");
    let redeclared = json!([{"@id": "dtmi:test:P;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2",
                              "contents": [{"@type": "Property", "name": "x", "schema": "string"}]},
                             {"@id": "dtmi:test:Q;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2", "extends": "dtmi:test:P;1",
                              "contents": [{"@type": "Property", "name": "x", "schema": "string"}]}]);
    assert!(client.post("/models", &redeclared).await.refused(400, "DTDLParserError").contains("redeclare"));
    let cycle = json!([{"@id": "dtmi:test:X;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2", "extends": "dtmi:test:Y;1"},
                        {"@id": "dtmi:test:Y;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2", "extends": "dtmi:test:X;1"}]);
    client.post("/models", &cycle).await.refused(400, "DTDLParserError");
    assert_eq!(mock.store.model_count(), 0);
    assert_eq!(mock.store.order_violations_total(), 0, "malformed batches are not dependency-order violations");
}

#[tokio::test]
async fn adt_model_rules_v2_cannot_extend_v3_and_components_nest_one_level() {
    let mock = start();
    let client = Client::new(&mock);
    let v3 = json!({"@id": "dtmi:test:V3;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3"});
    let v2_extends_v3 = json!({"@id": "dtmi:test:V2;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2", "extends": "dtmi:test:V3;1"});
    assert!(client
        .post("/models", &json!([v3.clone(), v2_extends_v3]))
        .await
        .refused(400, "DTDLParserError")
        .contains("v3"));
    let v3_extends_v2 = json!([
        {"@id": "dtmi:test:Two;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"},
        {"@id": "dtmi:test:Three;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3", "extends": "dtmi:test:Two;1"}
    ]);
    client.post("/models", &v3_extends_v2).await.ok(201);

    let nested = json!([
        {"@id": "dtmi:test:Inner;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"},
        {"@id": "dtmi:test:Middle;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2",
         "contents": [{"@type": "Component", "name": "inner", "schema": "dtmi:test:Inner;1"}]},
        {"@id": "dtmi:test:Outer;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2",
         "contents": [{"@type": "Component", "name": "middle", "schema": "dtmi:test:Middle;1"}]}
    ]);
    assert!(client.post("/models", &nested).await.refused(400, "DTDLParserError").contains("one level"));
}

#[tokio::test]
async fn model_lists_page_by_next_link_and_follow_dependencies() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let seen: Vec<String> =
        all_pages(&client, "/models", 4).await.iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    let mut expected = vec![ASSET, DEPOT, ENGINE, PART, VEHICLE, WHEEL];
    expected.sort();
    assert_eq!(seen, expected);

    let deps = client.get(&format!("/models?dependenciesFor={}&includeModelDefinition=true", urlencode(WHEEL))).await;
    let ids: Vec<&str> = deps.ok(200)["value"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![ASSET, PART, WHEEL]);
    assert!(deps.body["value"][0]["model"].is_object());
    let two = client
        .get(&format!("/models?dependenciesFor={}&dependenciesFor={}", urlencode(VEHICLE), urlencode(DEPOT)))
        .await;
    let ids: Vec<&str> = two.ok(200)["value"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        vec![ASSET, DEPOT, ENGINE, VEHICLE],
        "extends and components are dependencies; relationship targets are not"
    );
    client
        .get(&format!("/models?dependenciesFor={}", urlencode("dtmi:test:Nope;1")))
        .await
        .refused(404, "ModelNotFound");
}

fn urlencode(s: &str) -> String {
    twinload::adt::paths::encode_segment(s)
}

#[tokio::test]
async fn decommissioning_is_idempotent_and_stops_new_twins() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let decommission = json!([{"op": "replace", "path": "/decommissioned", "value": true}]);
    assert_eq!(client.patch(&model_path(DEPOT), &decommission).await.status, StatusCode::NO_CONTENT);
    assert_eq!(client.patch(&model_path(DEPOT), &decommission).await.status, StatusCode::NO_CONTENT);
    assert_eq!(client.get(&model_path(DEPOT)).await.ok(200)["decommissioned"], true);
    client.put_twin("d1", DEPOT, json!({"city": "Oslo"})).await.refused(400, "ModelDecommissioned");
    client
        .patch(&model_path(DEPOT), &json!([{"op": "replace", "path": "/displayName", "value": "x"}]))
        .await
        .refused(400, "JsonPatchInvalid");
    client.patch(&model_path("dtmi:test:Nope;1"), &decommission).await.refused(404, "ModelNotFound");
}

#[tokio::test]
async fn a_model_other_models_reference_cannot_be_deleted_and_twins_do_not_hold_one_back() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let message = client.delete(&model_path(ASSET)).await.refused(409, "ModelReferencesNotDeleted");
    assert!(message.contains(VEHICLE) && message.contains(PART), "{message}");
    client.delete(&model_path(ENGINE)).await.refused(409, "ModelReferencesNotDeleted");
    // Live ADT: 204 while a twin of the model exists; the twin stays readable, patchable and
    // deletable, and a new twin of the model is refused as for any missing model.
    client.put_twin("d1", DEPOT, json!({"city": "Oslo"})).await.ok(200);
    assert_eq!(client.delete(&model_path(DEPOT)).await.status, StatusCode::NO_CONTENT);
    client.get(&model_path(DEPOT)).await.refused(404, "ModelNotFound");
    let twin = client.get(&twin_path("d1")).await;
    assert_eq!(twin.ok(200)["$metadata"]["$model"], DEPOT);
    let patched = client.patch(&twin_path("d1"), &json!([{"op": "replace", "path": "/city", "value": "Bergen"}])).await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT, "{}", patched.body);
    assert_eq!(client.get(&twin_path("d1")).await.ok(200)["city"], "Bergen");
    client
        .patch(&twin_path("d1"), &json!([{"op": "replace", "path": "/city", "value": 7}]))
        .await
        .refused(400, "ValidationFailed");
    let missing = client.put_twin("d2", DEPOT, json!({})).await;
    missing.refused(400, "ValidationFailed");
    assert_eq!(
        missing.body["error"]["details"][0]["message"],
        format!("{DEPOT} or one of its dependencies does not exist.")
    );
    client.put_twin("d1", DEPOT, json!({})).await.refused(400, "ValidationFailed");
    assert_eq!(client.delete(&twin_path("d1")).await.status, StatusCode::NO_CONTENT);
    client.delete(&model_path(DEPOT)).await.refused(404, "ModelNotFound");
    // Deletion order: leaves first.
    for leaf in [VEHICLE, WHEEL, PART, ENGINE, ASSET] {
        assert_eq!(client.delete(&model_path(leaf)).await.status, StatusCode::NO_CONTENT, "{leaf}");
    }
    assert_eq!(mock.store.model_count(), 0);
}

#[tokio::test]
async fn a_model_id_that_is_not_a_dtmi_is_invalid_argument_on_every_model_route() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let bad = "thisIsNotAValidModelId";
    let message = client.get(&model_path(bad)).await.refused(400, "InvalidArgument");
    assert!(message.starts_with(&format!("The format of the Model ID {bad} provided is not supported")), "{message}");
    let decommission = json!([{"op": "replace", "path": "/decommissioned", "value": true}]);
    client.patch(&model_path(bad), &decommission).await.refused(400, "InvalidArgument");
    client.delete(&model_path(bad)).await.refused(400, "InvalidArgument");
    client.get(&format!("/models?dependenciesFor={bad}")).await.refused(400, "InvalidArgument");
    // A DTMI that names no model is still 404.
    client.get(&model_path("dtmi:test:Nope;1")).await.refused(404, "ModelNotFound");
    client.get(&format!("/models?dependenciesFor={}", urlencode(VEHICLE))).await.ok(200);
}

// ---------------------------------------------------------------------------------------------
// twins

#[tokio::test]
async fn put_twin_answers_the_full_twin_with_a_weak_etag_and_get_returns_it() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let mut body = vehicle("truck 1");
    body["$dtId"] = json!("ignored");
    body["$metadata"] = json!({"$model": VEHICLE, "speed": {"sourceTime": "2024-05-01T00:00:00Z"}});
    let created = client.put(&twin_path("v1"), &body).await;
    let twin = created.ok(200).clone();
    let etag = created.header("etag").expect("an ETag header").to_string();
    assert!(etag.starts_with("W/\"") && etag.ends_with('"') && etag.len() == 4 + 36, "{etag}");
    assert_eq!(twin["$etag"], etag);
    assert_eq!(twin["$dtId"], "v1", "the body's $dtId is ignored");
    assert_eq!(twin["name"], "truck 1");
    assert_eq!(twin["$metadata"]["$model"], VEHICLE);
    assert!(twin["$metadata"]["$lastUpdateTime"].is_string());
    assert!(twin["$metadata"]["name"]["lastUpdateTime"].is_string());
    assert_eq!(twin["$metadata"]["speed"]["sourceTime"], "2024-05-01T00:00:00Z");
    assert_eq!(twin["engine"]["rpm"], 900);
    assert!(twin["engine"]["$metadata"]["rpm"]["lastUpdateTime"].is_string());
    assert!(twin.get("mileage").is_none(), "only properties that are set are returned");

    let got = client.get(&twin_path("v1")).await;
    assert_eq!(got.ok(200), &twin);
    assert_eq!(got.header("etag"), Some(etag.as_str()));
    assert_eq!(got.header("content-type"), Some("application/json; charset=utf-8"));

    // PUT again replaces (200 again) with a new ETag.
    let replaced = client.put_twin("v1", VEHICLE, json!({"engine": {"$metadata": {}}})).await;
    assert_ne!(replaced.ok(200)["$etag"], twin["$etag"]);
    assert!(replaced.body.get("name").is_none(), "a PUT replaces the whole twin");
    assert_eq!(mock.store.twin_count(), 1);
}

#[tokio::test]
async fn ids_with_awkward_characters_round_trip_through_percent_encoding() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    for id in ["a b/c?d#e%f+g", "ünï-code", "semi;colon:and,comma"] {
        client.put_twin(id, DEPOT, json!({"city": id})).await.ok(200);
        assert_eq!(client.get(&twin_path(id)).await.ok(200)["$dtId"], id);
    }
    client.put_twin("x y", DEPOT, json!({})).await.ok(200);
    let rel = client.put_relationship("a b/c?d#e%f+g", "r/1 %", "x y", "locatedIn").await;
    rel.refused(400, "InvalidRelationship"); // Depot declares no locatedIn; the ids were decoded to reach that check.
}

#[tokio::test]
async fn a_twin_needs_its_model_and_valid_properties() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;

    let missing = client.put_twin("t", "dtmi:test:Nope;1", json!({})).await;
    assert_eq!(missing.refused(400, "ValidationFailed"), "Invalid twin specified");
    assert_eq!(missing.body["error"]["details"][0]["code"], "ValidationFailed");
    assert_eq!(
        missing.body["error"]["details"][0]["message"],
        "dtmi:test:Nope;1 or one of its dependencies does not exist."
    );
    assert_eq!(mock.store.order_violations_total(), 1);

    let cases = [
        (json!({"colour": "red", "engine": {"$metadata": {}}}), "colour"),
        (json!({"speed": "fast", "engine": {"$metadata": {}}}), "speed"),
        (json!({"mileage": 1.5, "engine": {"$metadata": {}}}), "mileage"),
        (json!({"status": "parked", "engine": {"$metadata": {}}}), "status"),
        (json!({"pos": {"lat": "north"}, "engine": {"$metadata": {}}}), "pos.lat"),
        (json!({"engine": {"$metadata": {}, "rpm": "fast"}}), "engine.rpm"),
        (json!({"engine": {"$metadata": {}, "torque": 1}}), "engine.torque"),
        (json!({"name": "no engine"}), "engine"),
        (json!({"$kind": "x", "engine": {"$metadata": {}}}), "$kind"),
    ];
    for (props, named) in cases {
        let answer = client.put_twin("v", VEHICLE, props.clone()).await;
        answer.refused(400, "ValidationFailed");
        let detail = answer.body["error"]["details"][0]["message"].as_str().unwrap_or_default().to_string();
        assert!(detail.contains(named), "{props}: {detail}");
    }
    // Inherited (Asset.name), enum, object and component properties are all accepted.
    client
        .put_twin("v", VEHICLE, json!({"name": "n", "status": "active", "pos": {"lat": 1, "lon": 2.5}, "mileage": 7, "engine": {"$metadata": {}}}))
        .await
        .ok(200);
    assert_eq!(mock.store.order_violations_total(), 1, "only the missing model was a dependency-order violation");
    client.put(&twin_path("w"), &json!({"name": "no metadata"})).await.refused(400, "ValidationFailed");
    client.send(Method::PUT, &twin_path("w"), None, &[]).await.refused(400, "InvalidArgument");
}

#[tokio::test]
async fn oversized_twins_and_the_instance_cap_are_refused() {
    let limits = Limits { max_twins: 2, max_string_value_bytes: 64, ..test_limits() };
    let mock = harness::start(limits.clone(), StoreOptions::default());
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let big = "x".repeat(limits.max_payload_bytes);
    let message = client.put_twin("big", DEPOT, json!({ "city": big })).await.refused(413, "PayloadTooLarge");
    assert!(message.contains("32768"), "{message}");
    client.put_twin("long", DEPOT, json!({ "city": "y".repeat(65) })).await.refused(400, "ValidationFailed");
    client.put_twin("d1", DEPOT, json!({})).await.ok(200);
    client.put_twin("d2", DEPOT, json!({})).await.ok(200);
    client.put_twin("d3", DEPOT, json!({})).await.refused(400, "TwinLimitReached");
    client.put_twin("d2", DEPOT, json!({"city": "replacing is not creating"})).await.ok(200);
    assert_eq!(client.delete(&twin_path("d1")).await.status, StatusCode::NO_CONTENT);
    client.put_twin("d3", DEPOT, json!({})).await.ok(200);
}

#[tokio::test]
async fn if_none_match_star_creates_only() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let body = json!({"$metadata": {"$model": DEPOT}});
    client.send(Method::PUT, &twin_path("d1"), Some(&body), &[("If-None-Match", "*")]).await.ok(200);
    let message = client
        .send(Method::PUT, &twin_path("d1"), Some(&body), &[("If-None-Match", "*")])
        .await
        .refused(412, "PreconditionFailed");
    assert_eq!(message, "If-None-Match: * header was specified but a twin with the id d1 was found. Please specify a different twin id.");
    let message = client
        .send(Method::PUT, &twin_path("d2"), Some(&body), &[("If-None-Match", "XXX")])
        .await
        .refused(400, "InvalidArgument");
    assert_eq!(message, "Invalid If-None-Match header value. Allowed value(s): If-None-Match: *");
    client.get(&twin_path("d2")).await.refused(404, "DigitalTwinNotFound");
}

#[tokio::test]
async fn patch_twin_applies_add_replace_remove_and_answers_204_with_the_new_etag() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let created = client.put_twin("v1", VEHICLE, vehicle("truck")).await;
    let first_etag = created.ok(200)["$etag"].as_str().unwrap().to_string();
    let ops = json!([
        {"op": "replace", "path": "/speed", "value": 30.0},
        {"op": "add", "path": "/mileage", "value": 100},
        {"op": "remove", "path": "/name"},
        {"op": "add", "path": "/pos", "value": {"lat": 1.0}},
        {"op": "add", "path": "/pos/lon", "value": 2.0},
        {"op": "replace", "path": "/engine/rpm", "value": 1200},
        {"op": "add", "path": "/$metadata/speed/sourceTime", "value": "2024-01-01T00:00:00Z"}
    ]);
    let patched = client.patch(&twin_path("v1"), &ops).await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT, "{}", patched.body);
    assert_eq!(patched.body, Value::Null);
    let new_etag = patched.header("etag").expect("the new ETag").to_string();
    assert_ne!(new_etag, first_etag);
    let twin = client.get(&twin_path("v1")).await.ok(200).clone();
    assert_eq!(twin["$etag"], new_etag);
    assert_eq!((twin["speed"].clone(), twin["mileage"].clone()), (json!(30.0), json!(100)));
    assert!(twin.get("name").is_none() && twin["$metadata"].get("name").is_none());
    assert_eq!(twin["pos"], json!({"lat": 1.0, "lon": 2.0}));
    assert_eq!(twin["engine"]["rpm"], 1200);
    assert_eq!(twin["$metadata"]["speed"]["sourceTime"], "2024-01-01T00:00:00Z");

    // $model may change along with properties, to a model the twin's properties fit.
    client.put_twin("p1", PART, json!({"name": "bolt"})).await.ok(200);
    let to_wheel = json!([{"op": "replace", "path": "/$metadata/$model", "value": WHEEL}, {"op": "add", "path": "/partNo", "value": "W-1"}]);
    assert_eq!(client.patch(&twin_path("p1"), &to_wheel).await.status, StatusCode::NO_CONTENT);
    let wheel = client.get(&twin_path("p1")).await.ok(200).clone();
    assert_eq!((wheel["$metadata"]["$model"].clone(), wheel["partNo"].clone()), (json!(WHEEL), json!("W-1")));
    // p1 is a Wheel now: deleting that model (twins do not hold one back, as live) leaves it one.
    assert_eq!(client.delete(&model_path(WHEEL)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(client.get(&twin_path("p1")).await.ok(200)["$metadata"]["$model"], WHEEL);
}

#[tokio::test]
async fn bad_twin_patches_are_refused_with_adt_codes() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    client.put_twin("v1", VEHICLE, vehicle("truck")).await.ok(200);
    let path = twin_path("v1");
    let message = client
        .patch(&path, &json!([{"op": "add", "path": "/colour", "value": "red"}]))
        .await
        .refused(400, "JsonPatchInvalid");
    assert!(
        message.starts_with("colour does not exist on component. Please provide a valid patch document"),
        "{message}"
    );
    client.patch(&path, &json!([{"op": "remove", "path": "/mileage"}])).await.refused(400, "JsonPatchInvalid");
    client
        .patch(&path, &json!([{"op": "replace", "path": "/mileage", "value": 1}]))
        .await
        .refused(400, "JsonPatchInvalid");
    let message = client
        .patch(&path, &json!([{"op": "move", "from": "/name", "path": "/speed"}]))
        .await
        .refused(400, "JsonPatchInvalid");
    assert!(message.starts_with("Unsupported operation type move."), "{message}");
    client.patch(&path, &json!([{"op": "remove", "path": "/engine"}])).await.refused(400, "JsonPatchInvalid");
    client
        .patch(&path, &json!([{"op": "add", "path": "/engine/torque", "value": 1}]))
        .await
        .refused(400, "JsonPatchInvalid");
    client.patch(&path, &json!({"op": "add"})).await.refused(400, "JsonPatchInvalid");
    let invalid = client.patch(&path, &json!([{"op": "replace", "path": "/speed", "value": "fast"}])).await;
    invalid.refused(400, "ValidationFailed");
    client
        .patch(&path, &json!([{"op": "replace", "path": "/$metadata/$model", "value": "dtmi:test:Nope;1"}]))
        .await
        .refused(400, "ValidationFailed");
    let wrong_type = json!([{"op": "add", "path": "/speed", "value": 1.0}]);
    let answer = client.send(Method::PATCH, &path, Some(&wrong_type), &[("content-type", "application/json")]).await;
    answer.refused(415, "UnsupportedMediaType");
    client.patch(&twin_path("nope"), &wrong_type).await.refused(404, "DigitalTwinNotFound");
    // None of the refused patches changed the twin.
    let twin = client.get(&path).await.ok(200).clone();
    assert_eq!((twin["speed"].clone(), twin["name"].clone()), (json!(12.5), json!("truck")));
}

#[tokio::test]
async fn if_match_guards_patch_and_delete() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let etag =
        client.put_twin("d1", DEPOT, json!({"city": "Oslo"})).await.ok(200)["$etag"].as_str().unwrap().to_string();
    let ops = json!([{"op": "replace", "path": "/city", "value": "Bergen"}]);
    let message = client
        .send(Method::PATCH, &twin_path("d1"), Some(&ops), &[("If-Match", "not-an-etag")])
        .await
        .refused(400, "InvalidArgument");
    assert_eq!(message, "Invalid If-Match header value. Allowed value(s): If-Match: {etag} or If-Match: *");
    let stale = "W/\"00000000-0000-0000-0000-000000000000\"";
    client
        .send(Method::PATCH, &twin_path("d1"), Some(&ops), &[("If-Match", stale)])
        .await
        .refused(412, "PreconditionFailed");
    let patched = client.send(Method::PATCH, &twin_path("d1"), Some(&ops), &[("If-Match", etag.as_str())]).await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT);
    let new_etag = patched.header("etag").unwrap().to_string();
    client
        .send(Method::PATCH, &twin_path("d1"), Some(&ops), &[("If-Match", etag.as_str())])
        .await
        .refused(412, "PreconditionFailed");
    assert_eq!(
        client.send(Method::PATCH, &twin_path("d1"), Some(&ops), &[("If-Match", "*")]).await.status,
        StatusCode::NO_CONTENT
    );

    client.send(Method::DELETE, &twin_path("d1"), None, &[("If-Match", "bad")]).await.refused(400, "InvalidArgument");
    client
        .send(Method::DELETE, &twin_path("d1"), None, &[("If-Match", new_etag.as_str())])
        .await
        .refused(412, "PreconditionFailed");
    let current = client.get(&twin_path("d1")).await.ok(200)["$etag"].as_str().unwrap().to_string();
    assert_eq!(
        client.send(Method::DELETE, &twin_path("d1"), None, &[("If-Match", current.as_str())]).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn deleting_a_twin_needs_its_relationships_gone_first() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    client.put_twin("v1", VEHICLE, vehicle("truck")).await.ok(200);
    client.put_twin("depot", DEPOT, json!({})).await.ok(200);
    client.put_relationship("v1", "r1", "depot", "parkedAt").await.ok(200);
    let message = client.delete(&twin_path("v1")).await.refused(400, "RelationshipsNotDeleted");
    assert!(message.starts_with("Twin v1 has active relationships."), "{message}");
    client.delete(&twin_path("depot")).await.refused(400, "RelationshipsNotDeleted"); // incoming counts too
    assert_eq!(client.delete(&rel_path("v1", "r1")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(client.delete(&twin_path("depot")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(client.delete(&twin_path("v1")).await.status, StatusCode::NO_CONTENT);
    let message = client.delete(&twin_path("v1")).await.refused(404, "DigitalTwinNotFound");
    assert!(message.starts_with("There is no digital twin instance that exists with the ID v1."), "{message}");
    assert_eq!((mock.store.twin_count(), mock.store.relationship_count()), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// relationships

async fn fleet(client: &Client) {
    with_fleet_models(client).await;
    client.put_twin("v1", VEHICLE, vehicle("truck")).await.ok(200);
    client.put_twin("wheel1", WHEEL, json!({"partNo": "W1"})).await.ok(200);
    client.put_twin("depot", DEPOT, json!({"city": "Oslo"})).await.ok(200);
}

#[tokio::test]
async fn put_relationship_answers_it_with_an_etag_and_get_patch_delete_work() {
    let mock = start();
    let client = Client::new(&mock);
    fleet(&client).await;
    // Wheel extends Part, the declared target of hasPart.
    let created = client
        .put(&rel_path("v1", "r1"), &json!({"$targetId": "wheel1", "$relationshipName": "hasPart", "since": "2020"}))
        .await;
    let rel = created.ok(200).clone();
    assert_eq!(
        (
            rel["$relationshipId"].clone(),
            rel["$sourceId"].clone(),
            rel["$targetId"].clone(),
            rel["$relationshipName"].clone(),
            rel["since"].clone()
        ),
        (json!("r1"), json!("v1"), json!("wheel1"), json!("hasPart"), json!("2020"))
    );
    let etag = created.header("etag").unwrap().to_string();
    assert!(etag.starts_with("W/\""));
    assert_eq!(rel["$etag"], etag);
    let got = client.get(&rel_path("v1", "r1")).await;
    assert_eq!(got.ok(200), &rel);
    assert_eq!(got.header("etag"), Some(etag.as_str()));

    let patched =
        client.patch(&rel_path("v1", "r1"), &json!([{"op": "replace", "path": "/since", "value": "2021"}])).await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT);
    assert_ne!(patched.header("etag"), Some(etag.as_str()));
    assert_eq!(client.get(&rel_path("v1", "r1")).await.ok(200)["since"], "2021");
    client
        .patch(&rel_path("v1", "r1"), &json!([{"op": "add", "path": "/colour", "value": "x"}]))
        .await
        .refused(400, "JsonPatchInvalid");
    client
        .patch(&rel_path("v1", "r1"), &json!([{"op": "replace", "path": "/$targetId", "value": "depot"}]))
        .await
        .refused(400, "JsonPatchInvalid");
    client
        .patch(&rel_path("v1", "r1"), &json!([{"op": "replace", "path": "/since", "value": 5}]))
        .await
        .refused(400, "ValidationFailed");

    // The same relationship id under another source is a different relationship.
    client.put_relationship("wheel1", "r1", "depot", "locatedIn").await.ok(200);
    assert_eq!(mock.store.relationship_count(), 2);
    assert_eq!(client.delete(&rel_path("v1", "r1")).await.status, StatusCode::NO_CONTENT);
    let message = client.get(&rel_path("v1", "r1")).await.refused(404, "RelationshipNotFound");
    assert_eq!(message, "Relationship r1 not found on twin v1. Please verify that the relationship id is valid and ensure that the relationship is not deleted.");
    client.delete(&rel_path("v1", "r1")).await.refused(404, "RelationshipNotFound");
    client.get(&rel_path("ghost", "r1")).await.refused(404, "DigitalTwinNotFound");
    assert_eq!(mock.store.relationship_count(), 1);
}

#[tokio::test]
async fn relationship_refusals_carry_the_live_codes() {
    let mock = start();
    let client = Client::new(&mock);
    fleet(&client).await;
    client.put_relationship("ghost", "r", "depot", "parkedAt").await.refused(404, "DigitalTwinNotFound");
    let message =
        client.put_relationship("v1", "r", "ghost", "parkedAt").await.refused(404, "TargetDigitalTwinNotFound");
    assert!(message.starts_with("The target digital twin is invalid or does not exist"), "{message}");
    assert_eq!(mock.store.order_violations_total(), 2, "a missing source and a missing target");

    client.put_relationship("v1", "r", "v1", "locatedIn").await.refused(400, "OperationNotAllowed");
    client.put_relationship("v1", "r", "depot", "ownedBy").await.refused(400, "InvalidRelationship");
    let message = client.put_relationship("v1", "r", "depot", "hasPart").await.refused(400, "InvalidRelationship");
    assert!(message.contains(PART) && message.contains(DEPOT), "{message}");
    client.put_relationship("depot", "r", "v1", "locatedIn").await.refused(400, "InvalidRelationship"); // Depot declares none
                                                                                                        // Inherited (Asset.locatedIn) with no target restriction: any twin.
    client.put_relationship("wheel1", "r", "v1", "locatedIn").await.ok(200);
    client
        .put(&rel_path("v1", "r2"), &json!({"$targetId": "wheel1", "$relationshipName": "hasPart", "colour": "red"}))
        .await
        .refused(400, "ValidationFailed");
    client.put(&rel_path("v1", "r2"), &json!({"$relationshipName": "hasPart"})).await.refused(400, "InvalidArgument");
    client.put(&rel_path("v1", "r2"), &json!({"$targetId": "wheel1"})).await.refused(400, "InvalidArgument");

    client.put_relationship("v1", "p1", "depot", "parkedAt").await.ok(200);
    let body = json!({"$targetId": "depot", "$relationshipName": "parkedAt"});
    let message = client
        .send(Method::PUT, &rel_path("v1", "p1"), Some(&body), &[("If-None-Match", "*")])
        .await
        .refused(412, "PreconditionFailed");
    assert_eq!(message, "If-None-Match: * header was specified but a relationship with the id p1 was found. Please specify a different relationship id.");
    client.send(Method::PUT, &rel_path("v1", "p2"), Some(&body), &[("If-None-Match", "*")]).await.ok(200);
    let etag = client.get(&rel_path("v1", "p2")).await.ok(200)["$etag"].as_str().unwrap().to_string();
    let stale = "W/\"00000000-0000-0000-0000-000000000000\"";
    client
        .send(Method::DELETE, &rel_path("v1", "p2"), None, &[("If-Match", stale)])
        .await
        .refused(412, "PreconditionFailed");
    client
        .send(Method::DELETE, &rel_path("v1", "p2"), None, &[("If-Match", "nope")])
        .await
        .refused(400, "InvalidArgument");
    assert_eq!(
        client.send(Method::DELETE, &rel_path("v1", "p2"), None, &[("If-Match", etag.as_str())]).await.status,
        StatusCode::NO_CONTENT
    );
    let big = json!({"$targetId": "depot", "$relationshipName": "parkedAt", "x": "y".repeat(40_000)});
    client.put(&rel_path("v1", "big"), &big).await.refused(413, "PayloadTooLarge");
    assert_eq!(mock.store.order_violations_total(), 2);
}

#[tokio::test]
async fn relationships_per_twin_are_capped_in_and_out() {
    let limits = Limits { max_relationships_per_twin: 2, ..test_limits() };
    let mock = harness::start(limits, StoreOptions::default());
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    for id in ["hub", "a", "b", "c", "d"] {
        client.put_twin(id, PART, json!({})).await.ok(200);
    }
    client.put_relationship("hub", "1", "a", "locatedIn").await.ok(200);
    client.put_relationship("hub", "2", "b", "locatedIn").await.ok(200);
    let message = client.put_relationship("hub", "3", "c", "locatedIn").await.refused(400, "LimitExceeded");
    assert!(message.contains("outgoing"), "{message}");
    client.put_relationship("hub", "2", "b", "locatedIn").await.ok(200); // replacing is not adding
                                                                         // ADT cannot move a relationship to another target: delete it and create it again.
    client.put_relationship("hub", "2", "c", "locatedIn").await.refused(400, "OperationNotAllowed");
    client.delete(&rel_path("hub", "2")).await.ok(204);
    client.put_relationship("hub", "2", "c", "locatedIn").await.ok(200);
    client.put_relationship("a", "1", "d", "locatedIn").await.ok(200);
    client.put_relationship("b", "1", "d", "locatedIn").await.ok(200);
    let message = client.put_relationship("c", "1", "d", "locatedIn").await.refused(400, "LimitExceeded");
    assert!(message.contains("incoming"), "{message}");
    // The re-created relationship moved its incoming mark from b to c.
    let incoming_b = client.get(&format!("{}/incomingrelationships", twin_path("b"))).await;
    assert_eq!(incoming_b.ok(200)["value"], json!([]));
    assert_eq!(mock.store.relationship_count(), 4);
}

#[tokio::test]
async fn relationship_lists_page_and_filter_and_incoming_lists_show_links() {
    let mock = start();
    let client = Client::new(&mock);
    fleet(&client).await;
    for i in 0..5 {
        client.put_relationship("v1", &format!("part-{i}"), "wheel1", "hasPart").await.ok(200);
    }
    client.put_relationship("v1", "park", "depot", "parkedAt").await.ok(200);
    client.put_relationship("wheel1", "in", "depot", "locatedIn").await.ok(200);

    let list_path = format!("{}/relationships", twin_path("v1"));
    let mut ids = Vec::new();
    for rel in all_pages(&client, &list_path, 2).await {
        assert_eq!(rel["$sourceId"], "v1");
        assert!(rel["$etag"].is_string());
        ids.push(rel["$relationshipId"].as_str().unwrap().to_string());
    }
    assert_eq!(ids, vec!["park", "part-0", "part-1", "part-2", "part-3", "part-4"]);
    let parked = client.get(&format!("{list_path}?relationshipName=parkedAt")).await;
    assert_eq!(parked.ok(200)["value"].as_array().unwrap().len(), 1);
    assert_eq!(parked.body["nextLink"], Value::Null);

    let incoming = client.get(&format!("{}/incomingrelationships", twin_path("depot"))).await;
    let items = incoming.ok(200)["value"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0],
        json!({"$relationshipId": "park", "$sourceId": "v1", "$relationshipName": "parkedAt", "$relationshipLink": "/digitaltwins/v1/relationships/park"})
    );
    assert!(items[0].get("$targetId").is_none(), "the full body is not returned");
    let incoming_ids: Vec<Value> = all_pages(&client, &format!("{}/incomingrelationships", twin_path("wheel1")), 3)
        .await
        .iter()
        .map(|r| r["$relationshipId"].clone())
        .collect();
    assert_eq!(incoming_ids, vec![json!("part-0"), json!("part-1"), json!("part-2"), json!("part-3"), json!("part-4")]);
    client.get(&format!("{}/relationships", twin_path("ghost"))).await.refused(404, "DigitalTwinNotFound");
    client.get(&format!("{}/incomingrelationships", twin_path("ghost"))).await.refused(404, "DigitalTwinNotFound");
}

// ---------------------------------------------------------------------------------------------
// query

#[tokio::test]
async fn queries_filter_count_and_page_by_continuation_token() {
    let mock = start();
    let client = Client::new(&mock);
    fleet(&client).await;
    for i in 0..7 {
        client
            .put_twin(&format!("part{i}"), PART, json!({"name": format!("p{}", i % 2), "partNo": format!("N{i}")}))
            .await
            .ok(200);
    }
    client.put_relationship("v1", "r1", "wheel1", "hasPart").await.ok(200);
    client.put_relationship("wheel1", "r1", "depot", "locatedIn").await.ok(200);

    let all = client.query("SELECT * FROM DIGITALTWINS").await;
    assert_eq!(all.ok(200)["value"].as_array().unwrap().len(), 10);
    assert_eq!(all.body["continuationToken"], Value::Null);
    assert!(all.header("query-charge").unwrap().parse::<f64>().unwrap() > 0.0);
    assert_eq!(all.body["value"][0]["$dtId"], "depot", "rows come in id order");

    let by_id = client.query("SELECT * FROM DIGITALTWINS WHERE $dtId = 'v1'").await;
    assert_eq!(by_id.ok(200)["value"][0]["name"], "truck");
    assert_eq!(by_id.body["value"][0]["$etag"], client.get(&twin_path("v1")).await.body["$etag"]);
    let count = client.query("SELECT COUNT() FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:test:Part;1')").await;
    assert_eq!(count.ok(200)["value"], json!([{"COUNT": 8}]), "7 parts and a wheel (Wheel extends Part)");
    let exact = client.query("SELECT COUNT() FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:test:Part;1', exact)").await;
    assert_eq!(exact.ok(200)["value"], json!([{"COUNT": 7}]));
    let assets = client
        .query("SELECT COUNT() FROM DIGITALTWINS T WHERE IS_OF_MODEL(T, 'dtmi:test:Asset;1') AND T.name = 'p1'")
        .await;
    assert_eq!(assets.ok(200)["value"], json!([{"COUNT": 3}]));
    let by_model = client.query(&format!("SELECT T FROM DIGITALTWINS T WHERE T.$metadata.$model = '{DEPOT}'")).await;
    assert_eq!(by_model.ok(200)["value"][0]["T"]["city"], "Oslo");
    let speed = client.query("SELECT * FROM DIGITALTWINS WHERE speed = 12.5 AND engine.rpm = 900").await;
    assert_eq!(speed.ok(200)["value"].as_array().unwrap().len(), 1);

    let rels = client
        .query("SELECT * FROM RELATIONSHIPS R WHERE R.$sourceId = 'v1' AND R.$relationshipName = 'hasPart'")
        .await;
    assert_eq!(rels.ok(200)["value"], json!([client.get(&rel_path("v1", "r1")).await.body]));
    let rel_count = client.query("SELECT COUNT() FROM RELATIONSHIPS WHERE $targetId = 'depot'").await;
    assert_eq!(rel_count.ok(200)["value"], json!([{"COUNT": 1}]));

    let mut ids = Vec::new();
    let mut page = client
        .send(
            Method::POST,
            "/query",
            Some(&json!({"query": "SELECT * FROM DIGITALTWINS"})),
            &[("max-items-per-page", "4")],
        )
        .await;
    for _ in 0..10 {
        let body = page.ok(200).clone();
        let rows = body["value"].as_array().unwrap();
        assert!(rows.len() <= 4);
        ids.extend(rows.iter().map(|t| t["$dtId"].as_str().unwrap().to_string()));
        match body["continuationToken"].as_str() {
            None => break,
            Some(token) => {
                let next = json!({"continuationToken": token, "query": "ignored when a token is present"});
                page = client.send(Method::POST, "/query", Some(&next), &[("max-items-per-page", "4")]).await;
            }
        }
    }
    assert_eq!(ids.len(), 10);
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "each twin once, in id order");
    client.post("/query", &json!({"continuationToken": "no-such-token.4"})).await.refused(400, "BadRequest");
}

#[tokio::test]
async fn bad_and_unsupported_queries_are_sql_query_errors() {
    let mock = start();
    let client = Client::new(&mock);
    let message = client.query("foo").await.refused(400, "SqlQueryError");
    assert!(
        message.starts_with(
            "SQL query parse failed: SQL Parser Error, Line=1, Position=0, Message=missing SELECT at 'foo'"
        ),
        "{message}"
    );
    let message = client.query("SELECT * FROM DIGITALTWINS WHERE a = 1 OR b = 2").await.refused(400, "SqlQueryError");
    assert!(message.contains("does not support") && message.contains("OR"), "{message}");
    client.query("SELECT * FROM DIGITALTWINS T JOIN R RELATED T.has").await.refused(400, "SqlQueryError");
    client.query("SELECT * FROM DIGITALTWINS WHERE STARTSWITH($dtId, 'a')").await.refused(400, "SqlQueryError");
    client.post("/query", &json!({})).await.refused(400, "InvalidArgument");
}

// ---------------------------------------------------------------------------------------------
// eventual consistency

/// Polls until `check` holds, at most `limit` (checks behaviour, not timing).
async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn queries_lag_writes_when_the_index_lags_but_get_does_not() {
    let options = StoreOptions { query_index_lag: Duration::from_millis(400), ..StoreOptions::default() };
    let mock = harness::start(test_limits(), options);
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    client.put_twin("d1", DEPOT, json!({"city": "Oslo"})).await.ok(200);
    client.get(&twin_path("d1")).await.ok(200);
    let count = client.query("SELECT COUNT() FROM DIGITALTWINS").await;
    assert_eq!(count.ok(200)["value"], json!([{"COUNT": 0}]), "the index has not caught up yet");
    let seen = eventually(Duration::from_secs(10), async || {
        client.query("SELECT COUNT() FROM DIGITALTWINS").await.body["value"] == json!([{"COUNT": 1}])
    })
    .await;
    assert!(seen, "the query sees the twin once the lag has passed");
    assert_eq!(client.delete(&twin_path("d1")).await.status, StatusCode::NO_CONTENT);
    let stale = client.query("SELECT * FROM DIGITALTWINS WHERE $dtId = 'd1'").await;
    assert_eq!(stale.ok(200)["value"].as_array().unwrap().len(), 1, "a deleted twin is still in a lagging index");
}

#[tokio::test]
async fn new_twins_are_invisible_to_relationship_writes_for_a_while() {
    let options = StoreOptions { new_twin_invisible_for: Duration::from_millis(400), ..StoreOptions::default() };
    let mock = harness::start(test_limits(), options);
    let client = Client::new(&mock);
    fleet(&client).await;
    client.put_relationship("v1", "r1", "depot", "parkedAt").await.refused(404, "DigitalTwinNotFound");
    assert_eq!(mock.store.order_violations_total(), 0, "eventual consistency is not an order violation");
    let landed = eventually(Duration::from_secs(10), async || {
        client.put_relationship("v1", "r1", "depot", "parkedAt").await.status == StatusCode::OK
    })
    .await;
    assert!(landed);
    client.put_twin("late", DEPOT, json!({})).await.ok(200);
    client.put_relationship("v1", "r2", "late", "parkedAt").await.refused(404, "TargetDigitalTwinNotFound");
    assert_eq!(mock.store.order_violations_total(), 0);
}

// ---------------------------------------------------------------------------------------------
// export and reset

#[tokio::test]
async fn equal_graphs_export_byte_identical_ndjson_and_reset_empties() {
    let first = start();
    let second = start();
    for (mock, reversed) in [(&first, false), (&second, true)] {
        let client = Client::new(mock);
        let mut models: Vec<Value> = fleet_models().as_array().unwrap().clone();
        if reversed {
            models.reverse();
        }
        client.post("/models", &Value::Array(models)).await.ok(201);
        let mut twins = vec![
            ("v1", VEHICLE, json!({"speed": 1.0, "name": "n", "engine": {"rpm": 5, "$metadata": {}}})),
            ("w1", WHEEL, json!({"partNo": "x"})),
            ("d1", DEPOT, json!({"city": "Oslo"})),
        ];
        if reversed {
            twins.reverse();
        }
        for (id, model, props) in twins {
            client.put_twin(id, model, props).await.ok(200);
        }
        client
            .put(&rel_path("v1", "a"), &json!({"$relationshipName": "hasPart", "$targetId": "w1", "since": "s"}))
            .await
            .ok(200);
        client.put_relationship("w1", "b", "d1", "locatedIn").await.ok(200);
    }
    let export = |store: &Store| {
        let mut out = Vec::new();
        store.export_ndjson(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let text = export(&first.store);
    assert_eq!(text, export(&second.store));
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0], json!({"Section": "Header"}));
    assert_eq!(lines[2], json!({"Section": "Models"}));
    assert_eq!(lines[9], json!({"Section": "Twins"}));
    assert_eq!(lines[10], json!({"$dtId": "d1", "$metadata": {"$model": DEPOT}, "city": "Oslo"}));
    assert_eq!(lines[12], json!({"$dtId": "w1", "$metadata": {"$model": WHEEL}, "partNo": "x"}));
    assert_eq!(lines[11]["engine"], json!({"$metadata": {}, "rpm": 5}));
    assert!(lines[11].get("$etag").is_none());
    assert_eq!(lines[13], json!({"Section": "Relationships"}));
    assert_eq!(
        lines[14],
        json!({"$dtId": "v1", "$relationshipId": "a", "$targetId": "w1", "$relationshipName": "hasPart", "since": "s"})
    );
    assert_eq!(lines.len(), 16);

    first.store.reset();
    assert_eq!((first.store.model_count(), first.store.twin_count(), first.store.relationship_count()), (0, 0, 0));
    let client = Client::new(&first);
    client.get(&twin_path("v1")).await.refused(404, "DigitalTwinNotFound");
    with_fleet_models(&client).await;
}

// ---------------------------------------------------------------------------------------------
// components and telemetry

fn component_path(twin: &str, component: &str) -> String {
    format!("{}/components/{}", twin_path(twin), twinload::adt::paths::encode_segment(component))
}

#[tokio::test]
async fn a_component_reads_and_patches_on_its_own_and_the_twin_s_etag_moves() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let put = client.put_twin("v1", VEHICLE, vehicle("Bus")).await;
    let first_etag = put.header("etag").unwrap().to_string();
    let engine = client.get(&component_path("v1", "engine")).await;
    assert_eq!(engine.ok(200)["rpm"], 900);
    assert!(engine.body["$metadata"]["$lastUpdateTime"].is_string(), "{}", engine.body);
    assert!(engine.body["$metadata"]["rpm"]["lastUpdateTime"].is_string(), "{}", engine.body);
    assert!(engine.body.get("name").is_none(), "only the component: {}", engine.body);
    assert_eq!(engine.header("etag"), Some(first_etag.as_str()));

    let patched =
        client.patch(&component_path("v1", "engine"), &json!([{"op": "replace", "path": "/rpm", "value": 1200}])).await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT, "{}", patched.body);
    let new_etag = patched.header("etag").expect("the twin's new ETag").to_string();
    assert_ne!(new_etag, first_etag);
    let twin = client.get(&twin_path("v1")).await;
    assert_eq!((twin.ok(200)["engine"]["rpm"].as_i64(), twin.header("etag")), (Some(1200), Some(new_etag.as_str())));
    assert_eq!(twin.body["name"], "Bus", "the rest of the twin is untouched");

    // If-Match: the twin's current ETag passes, an old one is 412.
    let stale = [("if-match", first_etag.as_str())];
    let body = json!([{"op": "replace", "path": "/rpm", "value": 1}]);
    client
        .send(Method::PATCH, &component_path("v1", "engine"), Some(&body), &stale)
        .await
        .refused(412, "PreconditionFailed");
    let fresh = [("if-match", new_etag.as_str())];
    assert_eq!(
        client.send(Method::PATCH, &component_path("v1", "engine"), Some(&body), &fresh).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(mock.store.get_twin("v1").unwrap().contents["engine"]["rpm"], 1);
}

#[tokio::test]
async fn component_refusals_carry_the_live_codes() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    client.put_twin("v1", VEHICLE, vehicle("Bus")).await.ok(200);
    let before = mock.store.get_twin("v1").unwrap().etag.clone();
    client.get(&component_path("v1", "gearbox")).await.refused(404, "ComponentNotFound");
    client.get(&component_path("nobody", "engine")).await.refused(404, "DigitalTwinNotFound");
    let set_rpm = json!([{"op": "add", "path": "/rpm", "value": 1}]);
    client.patch(&component_path("v1", "gearbox"), &set_rpm).await.refused(404, "ComponentNotFound");
    client.patch(&component_path("nobody", "engine"), &set_rpm).await.refused(404, "DigitalTwinNotFound");
    for op in ["move", ""] {
        let body = json!([{"op": op, "path": "/rpm", "value": 1}]);
        client.patch(&component_path("v1", "engine"), &body).await.refused(400, "JsonPatchInvalid");
    }
    let unknown =
        client.patch(&component_path("v1", "engine"), &json!([{"op": "add", "path": "/torque", "value": 1}])).await;
    unknown.refused(400, "ValidationFailed");
    assert_eq!(unknown.body["error"]["details"][0]["message"], "torque does not appear on the DTDL for engine.");
    let wrong = client
        .patch(&component_path("v1", "engine"), &json!([{"op": "replace", "path": "/rpm", "value": "fast"}]))
        .await;
    wrong.refused(400, "ValidationFailed");
    assert_eq!(wrong.body["error"]["details"][0]["message"], "Expected value of type integer for rpm on engine.");
    // A body that is not a patch array: ASP.NET's own 400, without error.code.
    let object = client.patch(&component_path("v1", "engine"), &json!({"op": "add", "path": "/rpm", "value": 1})).await;
    assert_eq!(object.status, StatusCode::BAD_REQUEST, "{}", object.body);
    assert!(object.body.get("error").is_none(), "{}", object.body);
    assert_eq!((object.body["status"].as_u64(), object.body["title"].as_str().is_some()), (Some(400), true));
    assert!(object.body["errors"].is_object() && object.body["type"].is_string(), "{}", object.body);
    let text = client
        .raw(
            Method::PATCH,
            &format!("{}{}?{API}", client.base, component_path("v1", "engine")),
            Some("not json".into()),
            &[],
        )
        .await;
    assert_eq!(text.status, StatusCode::BAD_REQUEST);
    assert!(text.body["errors"].is_object() && text.body.get("error").is_none(), "{}", text.body);
    assert_eq!(mock.store.get_twin("v1").unwrap().etag, before, "no refused patch changed the twin");
}

#[tokio::test]
async fn telemetry_needs_a_message_id_and_a_twin_or_component_that_exists() {
    let mock = start();
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    client.put_twin("v1", VEHICLE, vehicle("Bus")).await.ok(200);
    let reading = json!({"rpm": 1000});
    let message_id = [("message-id", "m-1")];
    let twin_telemetry = format!("{}/telemetry", twin_path("v1"));
    let engine_telemetry = format!("{}/telemetry", component_path("v1", "engine"));
    for path in [&twin_telemetry, &engine_telemetry] {
        let sent = client.send(Method::POST, path, Some(&reading), &message_id).await;
        assert_eq!(sent.status, StatusCode::NO_CONTENT, "{path}: {}", sent.body);
        let message = client.post(path, &reading).await.refused(400, "InvalidArgument");
        assert!(message.contains("Message-Id"), "{message}");
    }
    let nobody = format!("{}/telemetry", twin_path("nobody"));
    client.send(Method::POST, &nobody, Some(&reading), &message_id).await.refused(404, "DigitalTwinNotFound");
    let gearbox = format!("{}/telemetry", component_path("v1", "gearbox"));
    client.send(Method::POST, &gearbox, Some(&reading), &message_id).await.refused(404, "ComponentNotFound");
    assert_eq!(mock.store.twin_count(), 1, "telemetry writes nothing");
}

// ---------------------------------------------------------------------------------------------
// per-twin limits, as the handlers apply them

#[tokio::test]
async fn a_write_over_the_per_twin_limit_is_429_with_retry_after_and_changes_nothing() {
    let limits = Limits { per_twin_writes_per_s: 1, ..test_limits() };
    let mock = harness::start(limits, StoreOptions::default());
    let client = Client::new(&mock);
    with_fleet_models(&client).await;
    let mut last_landed = None;
    let mut refused = None;
    for i in 0..50 {
        let answer = client.put_twin("d1", DEPOT, json!({ "city": format!("city {i}") })).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((i, answer));
            break;
        }
        answer.ok(200);
        last_landed = Some(i);
    }
    let (attempt, answer) = refused.expect("50 writes to one twin at once meet a 1 write/s limit");
    answer.refused(429, "QuotaReachedError");
    let retry_after: u64 = answer.header("retry-after").expect("Retry-After").parse().expect("whole seconds");
    assert!(retry_after >= 1);
    let twin = client.get(&twin_path("d1")).await.ok(200).clone();
    assert_eq!(twin["city"], format!("city {}", last_landed.expect("the first write landed")));
    assert_ne!(twin["city"], format!("city {attempt}"), "the refused write changed nothing");
}
