//! The ARM template config/arm/twinload.json as Resource Manager reads it, for tests
//! (https://learn.microsoft.com/azure/azure-resource-manager/templates/template-expressions):
//! a string `[…]` is an expression (`[[` a literal `[`), of the functions `parameters`,
//! `variables`, `concat`, `resourceId`, `reference` and `resourceGroup`; anything else panics
//! naming it. `reference()` answers with the properties the referenced resource type reports
//! (a managed identity's `clientId` and `principalId`, a Batch account's `accountEndpoint`, a
//! storage account's `primaryEndpoints`, a vault's `vaultUri`), and only for a resource the
//! template deploys or one of [`EXPECTED_TO_EXIST`].

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::expression::evaluate_calls;

pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000aaaa";
pub const RESOURCE_GROUP: &str = "twinload-rg";
/// Resource types the template names but does not deploy (README: create them first).
pub const EXPECTED_TO_EXIST: [&str; 3] =
    ["Microsoft.Batch/batchAccounts", "Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults"];

/// A template with the values of a parameters file.
pub struct Deployment<'t> {
    pub template: &'t Value,
    pub values: &'t Map<String, Value>,
    /// Ids of the resources the template deploys.
    pub deployed: BTreeSet<String>,
    /// Parameters and variables an expression read.
    pub used: std::cell::RefCell<BTreeSet<String>>,
    /// Every resource id an expression made (`resourceId`) or read (`reference`).
    pub named: std::cell::RefCell<BTreeSet<String>>,
}

impl<'t> Deployment<'t> {
    pub fn new(template: &'t Value, parameters_file: &'t Value) -> Deployment<'t> {
        let values = parameters_file["parameters"].as_object().expect("a parameters file has parameters");
        let mut deployment = Deployment {
            template,
            values,
            deployed: BTreeSet::new(),
            used: std::cell::RefCell::default(),
            named: std::cell::RefCell::default(),
        };
        let resources = template["resources"].as_array().expect("resources");
        let ids: BTreeSet<String> = resources.iter().map(|r| deployment.id_of(r)).collect();
        assert_eq!(ids.len(), resources.len(), "two resources with one id");
        deployment.deployed = ids;
        deployment
    }

    /// The id of a resource of the template (its type and evaluated name).
    pub fn id_of(&self, resource: &Value) -> String {
        let kind = resource["type"].as_str().expect("a resource has a type");
        let name = self.evaluate(&resource["name"]);
        let names: Vec<Value> = name.as_str().expect("a name is a string").split('/').map(Value::from).collect();
        resource_id(kind, &names)
    }

    /// A value with every expression in it (object keys too) evaluated.
    pub fn evaluate(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => self.evaluate_string(s),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.evaluate(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let key = self.evaluate_string(k);
                        (key.as_str().expect("a key evaluates to a string").to_string(), self.evaluate(v))
                    })
                    .collect(),
            ),
            _ => value.clone(),
        }
    }

    fn evaluate_string(&self, text: &str) -> Value {
        if let Some(literal) = text.strip_prefix("[[") {
            return Value::String(format!("[{literal}"));
        }
        match text.strip_prefix('[') {
            Some(inner) => {
                let inner = inner.strip_suffix(']').unwrap_or_else(|| panic!("`{text}` does not end with ]"));
                evaluate_calls(inner, &mut |name, args| self.call(name, args, text))
            }
            None => Value::String(text.to_string()),
        }
    }

    fn call(&self, name: &str, args: &[Value], text: &str) -> Value {
        let string = |i: usize| -> String {
            args.get(i)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("`{text}`: {name} wants a string as argument {i}"))
                .to_string()
        };
        match name {
            "parameters" => {
                let param = string(0);
                let spec = self.template["parameters"]
                    .get(&param)
                    .unwrap_or_else(|| panic!("`{text}`: parameter {param} is not declared"));
                self.used.borrow_mut().insert(format!("parameters.{param}"));
                match self.values.get(&param) {
                    Some(given) => given["value"].clone(),
                    None => self.evaluate(
                        spec.get("defaultValue")
                            .unwrap_or_else(|| panic!("`{text}`: parameter {param} has no value and no default")),
                    ),
                }
            }
            "variables" => {
                let variable = string(0);
                let value = self.template["variables"]
                    .get(&variable)
                    .unwrap_or_else(|| panic!("`{text}`: variable {variable} is not declared"));
                self.used.borrow_mut().insert(format!("variables.{variable}"));
                self.evaluate(value)
            }
            "concat" => Value::String((0..args.len()).map(string).collect::<String>()),
            "resourceGroup" => json!({"name": RESOURCE_GROUP, "location": "westeurope"}),
            "resourceId" => {
                let id = resource_id(&string(0), &args[1..]);
                self.named.borrow_mut().insert(id.clone());
                Value::String(id)
            }
            "reference" => {
                let id = string(0);
                self.named.borrow_mut().insert(id.clone());
                assert!(args.len() >= 2, "`{text}`: reference() without an api version");
                let kind = type_of(&id);
                assert!(
                    self.deployed.contains(&id) || EXPECTED_TO_EXIST.contains(&kind.as_str()),
                    "`{text}`: {id} is neither deployed by the template nor expected to exist"
                );
                let name = id.rsplit('/').next().unwrap();
                match kind.as_str() {
                    "Microsoft.ManagedIdentity/userAssignedIdentities" => json!({
                        "clientId": "5b0f2d3e-0000-4000-8000-00000000c11e",
                        "principalId": "5b0f2d3e-0000-4000-8000-00000000919d",
                    }),
                    "Microsoft.Batch/batchAccounts" => {
                        json!({"accountEndpoint": format!("{name}.westeurope.batch.azure.com")})
                    }
                    "Microsoft.Storage/storageAccounts" => {
                        json!({"primaryEndpoints": {"blob": format!("https://{name}.blob.core.windows.net/")}})
                    }
                    "Microsoft.KeyVault/vaults" => json!({"vaultUri": format!("https://{name}.vault.azure.net/")}),
                    other => panic!("`{text}`: reference() to a {other} is outside what this test models"),
                }
            }
            other => panic!("`{text}`: function {other}() is outside the tested subset"),
        }
    }
}

/// `/subscriptions/…/resourceGroups/…/providers/<namespace>/<type>/<name>[/<type>/<name>…]`.
pub fn resource_id(kind: &str, names: &[Value]) -> String {
    let mut segments = kind.split('/');
    let namespace = segments.next().unwrap();
    let types: Vec<&str> = segments.collect();
    assert_eq!(types.len(), names.len(), "resourceId({kind}, …) needs one name per type segment: {names:?}");
    let mut id = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/{namespace}");
    for (t, n) in types.iter().zip(names) {
        id.push_str(&format!("/{t}/{}", n.as_str().expect("a resource name is a string")));
    }
    id
}

/// The resource type of an id made by [`resource_id`].
pub fn type_of(id: &str) -> String {
    let after = id.split("/providers/").nth(1).unwrap_or_else(|| panic!("{id} is not a resource id"));
    let parts: Vec<&str> = after.split('/').collect();
    let mut kind = parts[0].to_string();
    for t in parts[1..].iter().step_by(2) {
        kind.push('/');
        kind.push_str(t);
    }
    kind
}
