//! The DTDL v2 models of the synthetic fleet: an `Asset` base that the organisation, region,
//! depot, vehicle, part and hub interfaces extend; a `Telematics` interface (no components of
//! its own) used as the vehicle's `telematics` component; properties of several schemas
//! (string, integer, double, boolean, date, dateTime, enum, object, map); relationships with
//! properties, with and without a target.

use serde_json::{json, Value};

pub const ASSET: &str = "dtmi:twinload:fleet:Asset;1";
pub const TELEMATICS: &str = "dtmi:twinload:fleet:Telematics;1";
pub const ORGANISATION: &str = "dtmi:twinload:fleet:Organisation;1";
pub const REGION: &str = "dtmi:twinload:fleet:Region;1";
pub const DEPOT: &str = "dtmi:twinload:fleet:Depot;1";
pub const VEHICLE: &str = "dtmi:twinload:fleet:Vehicle;1";
pub const PART: &str = "dtmi:twinload:fleet:Part;1";
pub const HUB: &str = "dtmi:twinload:fleet:Hub;1";

const CONTEXT: &str = "dtmi:dtdl:context;2";

fn property(name: &str, schema: Value) -> Value {
    json!({"@type": "Property", "name": name, "schema": schema})
}

fn relationship(name: &str, target: Option<&str>, properties: Vec<Value>) -> Value {
    let mut r = json!({"@type": "Relationship", "name": name, "properties": properties});
    if let Some(t) = target {
        r["target"] = json!(t);
    }
    r
}

fn interface(id: &str, display: &str, extends: Option<&str>, contents: Vec<Value>) -> Value {
    let mut i =
        json!({"@id": id, "@type": "Interface", "@context": CONTEXT, "displayName": display, "contents": contents});
    if let Some(parent) = extends {
        i["extends"] = json!(parent);
    }
    i
}

fn string_enum(values: &[&str]) -> Value {
    let values: Vec<Value> = values.iter().map(|v| json!({"name": v, "enumValue": v})).collect();
    json!({"@type": "Enum", "valueSchema": "string", "enumValues": values})
}

/// Statuses every asset may have.
pub const STATUSES: [&str; 3] = ["active", "maintenance", "retired"];
/// Fuels a vehicle may run on.
pub const FUELS: [&str; 4] = ["diesel", "petrol", "electric", "hybrid"];

/// Every model of the fleet, bases before the models that need them.
pub fn all() -> Vec<Value> {
    vec![
        interface(
            ASSET,
            "Asset",
            None,
            vec![
                property("name", json!("string")),
                property("externalId", json!("string")),
                property("commissioned", json!("date")),
                property("status", string_enum(&STATUSES)),
                property(
                    "tags",
                    json!({"@type": "Map", "mapKey": {"name": "tag", "schema": "string"}, "mapValue": {"name": "value", "schema": "string"}}),
                ),
                relationship("locatedNear", None, vec![property("distanceKm", json!("double"))]),
            ],
        ),
        interface(
            TELEMATICS,
            "Telematics unit",
            None,
            vec![
                property("firmware", json!("string")),
                property("online", json!("boolean")),
                property("signalDbm", json!("integer")),
                property("lastSeen", json!("dateTime")),
            ],
        ),
        interface(
            ORGANISATION,
            "Organisation",
            Some(ASSET),
            vec![
                property("founded", json!("integer")),
                property("sector", json!("string")),
                relationship("contains", Some(REGION), vec![]),
            ],
        ),
        interface(
            REGION,
            "Region",
            Some(ASSET),
            vec![
                property("code", json!("string")),
                property("areaKm2", json!("double")),
                relationship("contains", Some(DEPOT), vec![]),
            ],
        ),
        interface(
            DEPOT,
            "Depot",
            Some(ASSET),
            vec![
                property("capacity", json!("integer")),
                property("open24h", json!("boolean")),
                property(
                    "address",
                    json!({"@type": "Object", "fields": [
                        {"name": "street", "schema": "string"},
                        {"name": "city", "schema": "string"},
                        {"name": "postcode", "schema": "string"}]}),
                ),
                relationship("hosts", Some(VEHICLE), vec![property("since", json!("date"))]),
            ],
        ),
        interface(
            VEHICLE,
            "Vehicle",
            Some(ASSET),
            vec![
                property("plate", json!("string")),
                property("mileageKm", json!("double")),
                property("fuel", string_enum(&FUELS)),
                property("lastService", json!("dateTime")),
                json!({"@type": "Component", "name": "telematics", "schema": TELEMATICS}),
                relationship(
                    "hasPart",
                    Some(PART),
                    vec![property("installedOn", json!("date")), property("position", json!("integer"))],
                ),
                relationship("servicedAt", Some(DEPOT), vec![property("contract", json!("string"))]),
            ],
        ),
        interface(
            PART,
            "Part",
            Some(ASSET),
            vec![
                property("partNumber", json!("string")),
                property("weightKg", json!("double")),
                property("critical", json!("boolean")),
            ],
        ),
        interface(
            HUB,
            "Monitoring hub",
            Some(ASSET),
            vec![
                property("zone", json!("string")),
                relationship("monitors", None, vec![property("priority", json!("integer"))]),
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtdl::Interface;

    #[test]
    fn every_model_is_an_interface_adt_accepts() {
        for model in all() {
            let i = Interface::parse(&model).unwrap();
            for dep in i.dependencies() {
                assert!(all().iter().any(|m| m["@id"] == dep), "{} needs {dep}, which the fleet defines", i.id);
            }
        }
        let telematics = Interface::parse(&all()[1]).unwrap();
        assert!(telematics.components.is_empty(), "a component's interface may not have components");
    }
}
