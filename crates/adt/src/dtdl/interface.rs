//! One DTDL Interface, read for what loading needs: its id, DTDL version, the models it depends
//! on (extends, component schemas) and the contents twins and relationships are checked against.

use serde_json::{Map, Value};

use super::dtmi::{validate_dtmi, validate_interface_dtmi};

/// Why a JSON document is not an Interface ADT would accept. `model` is the `@id` when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model {model}: {reason}")]
pub struct DtdlError {
    pub model: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PropertyDecl {
    pub name: String,
    /// The DTDL schema as written: a primitive name (`"double"`), a DTMI, or a complex schema object.
    pub schema: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelationshipDecl {
    pub name: String,
    /// `None`: any twin may be the target.
    pub target: Option<String>,
    pub properties: Vec<PropertyDecl>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ComponentDecl {
    pub name: String,
    pub schema: String,
}

/// An Interface's declarations. Inherited contents are not merged in here; resolving `extends`
/// needs the other models (the mock's store and the planner do that).
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    pub id: String,
    /// 2 or 3.
    pub dtdl_version: u8,
    pub extends: Vec<String>,
    pub properties: Vec<PropertyDecl>,
    pub telemetry: Vec<String>,
    pub relationships: Vec<RelationshipDecl>,
    pub components: Vec<ComponentDecl>,
    pub display_name: Option<Value>,
    pub description: Option<Value>,
}

/// DTDL v2 allows at most two direct parents.
pub const MAX_V2_EXTENDS: usize = 2;
/// Name length limits: 64 characters in v2, 512 in v3.
const MAX_NAME_V2: usize = 64;
const MAX_NAME_V3: usize = 512;

impl Interface {
    /// The models this one cannot be uploaded without: its parents and component schemas.
    /// (Relationship targets are references by name only and are not upload dependencies.)
    pub fn dependencies(&self) -> impl Iterator<Item = &str> {
        self.extends.iter().map(String::as_str).chain(self.components.iter().map(|c| c.schema.as_str()))
    }

    pub fn parse(doc: &Value) -> Result<Interface, DtdlError> {
        let obj = doc.as_object().ok_or_else(|| DtdlError {
            model: "(unknown)".into(),
            reason: "a model must be a JSON object (a DTDL Interface)".into(),
        })?;
        let id = match obj.get("@id") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(DtdlError { model: "(unknown)".into(), reason: "@id must be a string".into() }),
            None => return Err(DtdlError { model: "(unknown)".into(), reason: "the Interface has no @id".into() }),
        };
        let fail = |reason: String| DtdlError { model: id.clone(), reason };

        let dtdl_version = context_version(obj.get("@context")).map_err(fail)?;
        match obj.get("@type") {
            Some(Value::String(t)) if t == "Interface" => {}
            Some(Value::Array(ts)) if ts.iter().any(|t| t == "Interface") => {}
            other => {
                return Err(fail(format!(
                    "@type must be \"Interface\" (found {}); only Interfaces may be uploaded",
                    other.map(|v| v.to_string()).unwrap_or_else(|| "nothing".into())
                )))
            }
        }
        validate_interface_dtmi(&id, dtdl_version).map_err(|e| fail(e.to_string()))?;

        let extends = match obj.get("extends") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => {
                        Err(fail("extends must name interfaces by DTMI; define the parent as a top-level model".into()))
                    }
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(fail("extends must be a DTMI or an array of DTMIs".into())),
        };
        if dtdl_version == 2 && extends.len() > MAX_V2_EXTENDS {
            return Err(fail(format!(
                "DTDL v2 allows at most {MAX_V2_EXTENDS} interfaces in extends, found {}",
                extends.len()
            )));
        }
        for parent in &extends {
            validate_dtmi(parent, dtdl_version).map_err(|e| fail(format!("in extends: {e}")))?;
        }

        let mut interface = Interface {
            id: id.clone(),
            dtdl_version,
            extends,
            properties: Vec::new(),
            telemetry: Vec::new(),
            relationships: Vec::new(),
            components: Vec::new(),
            display_name: obj.get("displayName").cloned(),
            description: obj.get("description").cloned(),
        };
        let contents = match obj.get("contents") {
            None => &[][..],
            Some(Value::Array(items)) => items.as_slice(),
            Some(_) => return Err(fail("contents must be an array".into())),
        };
        let mut seen_names = std::collections::HashSet::new();
        for element in contents {
            let element =
                element.as_object().ok_or_else(|| fail("every element of contents must be an object".into()))?;
            let name = content_name(element, dtdl_version).map_err(&fail)?;
            if !seen_names.insert(name.clone()) {
                return Err(fail(format!("the name '{name}' is declared twice in contents")));
            }
            match element_type(element).as_deref() {
                Some("Property") => {
                    let schema = schema_of(element, &name).map_err(&fail)?;
                    interface.properties.push(PropertyDecl { name, schema });
                }
                Some("Telemetry") => interface.telemetry.push(name),
                Some("Relationship") => {
                    let target = match element.get("target") {
                        None => None,
                        Some(Value::String(t)) => {
                            validate_dtmi(t, dtdl_version)
                                .map_err(|e| fail(format!("relationship '{name}' target: {e}")))?;
                            Some(t.clone())
                        }
                        Some(_) => return Err(fail(format!("relationship '{name}': target must be a DTMI"))),
                    };
                    let mut properties = Vec::new();
                    if let Some(Value::Array(props)) = element.get("properties") {
                        for p in props {
                            let p = p
                                .as_object()
                                .ok_or_else(|| fail(format!("relationship '{name}': properties must be objects")))?;
                            let pname = content_name(p, dtdl_version).map_err(&fail)?;
                            properties.push(PropertyDecl { schema: schema_of(p, &pname).map_err(&fail)?, name: pname });
                        }
                    }
                    interface.relationships.push(RelationshipDecl { name, target, properties });
                }
                Some("Component") => match element.get("schema") {
                    Some(Value::String(schema)) => {
                        validate_dtmi(schema, dtdl_version).map_err(|_| {
                            fail(format!(
                                "has 'contents' value with name '{name}' whose property 'schema' has value '{schema}' that is not a DTMI or a DTDL term"
                            ))
                        })?;
                        interface.components.push(ComponentDecl { name, schema: schema.clone() });
                    }
                    _ => {
                        return Err(fail(format!(
                            "component '{name}': schema must be the DTMI of a top-level Interface"
                        )))
                    }
                },
                Some("Command") => {
                    return Err(fail(format!("'{name}' is a Command, which Azure Digital Twins does not support")))
                }
                Some(other) => {
                    return Err(fail(format!(
                        "'{name}' has @type '{other}'; expected Property, Telemetry, Relationship or Component"
                    )))
                }
                None => return Err(fail(format!("content '{name}' has no @type"))),
            }
        }
        Ok(interface)
    }
}

fn context_version(context: Option<&Value>) -> Result<u8, String> {
    let first = match context {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Array(items)) => items.first().and_then(Value::as_str).unwrap_or(""),
        _ => return Err("@context is missing; use \"dtmi:dtdl:context;2\" or \"dtmi:dtdl:context;3\"".into()),
    };
    match first {
        "dtmi:dtdl:context;2" => Ok(2),
        "dtmi:dtdl:context;3" => Ok(3),
        other => Err(format!(
            "@context '{other}' is not a DTDL version ADT supports; the first @context must be \"dtmi:dtdl:context;2\" or \"dtmi:dtdl:context;3\""
        )),
    }
}

fn element_type(element: &Map<String, Value>) -> Option<String> {
    match element.get("@type") {
        Some(Value::String(t)) => Some(t.clone()),
        // Semantic types come as ["Property", "Temperature"]: the first DTDL element type wins.
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| matches!(*t, "Property" | "Telemetry" | "Relationship" | "Component" | "Command"))
            .map(str::to_string),
        _ => None,
    }
}

fn content_name(element: &Map<String, Value>, dtdl_version: u8) -> Result<String, String> {
    let name = element.get("name").and_then(Value::as_str).ok_or("a content element has no name")?;
    let max = if dtdl_version == 2 { MAX_NAME_V2 } else { MAX_NAME_V3 };
    let valid = name.len() <= max
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "name '{name}' is invalid: use letters, digits and '_', start with a letter, end with a letter or digit, at most {max} characters"
        ));
    }
    Ok(name.to_string())
}

fn schema_of(element: &Map<String, Value>, name: &str) -> Result<Value, String> {
    element.get("schema").cloned().ok_or_else(|| format!("property '{name}' has no schema"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"@id":"dtmi:ex:Vehicle;1","@type":"Interface","@context":"dtmi:dtdl:context;2",
          "extends":"dtmi:ex:Asset;1",
          "contents":[
            {"@type":"Property","name":"plate","schema":"string"},
            {"@type":["Property","Temperature"],"name":"temp","schema":"double","unit":"degreeCelsius"},
            {"@type":"Telemetry","name":"speed","schema":"double"},
            {"@type":"Relationship","name":"hasPart","target":"dtmi:ex:Part;1","properties":[{"@type":"Property","name":"since","schema":"dateTime"}]},
            {"@type":"Component","name":"engine","schema":"dtmi:ex:Engine;1"}]})
    }

    #[test]
    fn reads_dependencies_and_contents() {
        let i = Interface::parse(&base()).unwrap();
        assert_eq!(i.dtdl_version, 2);
        assert_eq!(i.dependencies().collect::<Vec<_>>(), vec!["dtmi:ex:Asset;1", "dtmi:ex:Engine;1"]);
        assert_eq!(i.properties.len(), 2);
        assert_eq!(i.relationships[0].target.as_deref(), Some("dtmi:ex:Part;1"));
        assert_eq!(i.relationships[0].properties[0].name, "since");
        assert_eq!(i.telemetry, vec!["speed"]);
    }

    #[test]
    fn rejects_what_adt_rejects() {
        let mut cmd = base();
        cmd["contents"].as_array_mut().unwrap().push(json!({"@type":"Command","name":"reboot"}));
        assert!(Interface::parse(&cmd).unwrap_err().reason.contains("does not support"));

        let mut dup = base();
        dup["contents"].as_array_mut().unwrap().push(json!({"@type":"Property","name":"plate","schema":"string"}));
        assert!(Interface::parse(&dup).unwrap_err().reason.contains("twice"));

        let mut ctx = base();
        ctx["@context"] = json!("dtmi:dtdl:context;1");
        assert!(Interface::parse(&ctx).unwrap_err().reason.contains("@context"));

        let mut many = base();
        many["extends"] = json!(["dtmi:a;1", "dtmi:b;1", "dtmi:c;1"]);
        assert!(Interface::parse(&many).unwrap_err().reason.contains("at most 2"));

        let mut comp = base();
        comp["contents"][4]["schema"] = json!("XXX");
        assert!(Interface::parse(&comp).unwrap_err().reason.contains("not a DTMI or a DTDL term"));

        assert!(Interface::parse(&json!([1])).is_err());
        assert!(Interface::parse(&json!({"@type":"Interface"})).unwrap_err().reason.contains("no @id"));
    }

    #[test]
    fn v3_context_array_and_versionless_refs() {
        let doc = json!({"@id":"dtmi:ex:X;1","@type":"Interface","@context":["dtmi:dtdl:context;3"],"extends":["dtmi:ex:Base"]});
        let i = Interface::parse(&doc).unwrap();
        assert_eq!((i.dtdl_version, i.extends.len()), (3, 1));
    }
}
