//! A twin's components as their own resource (`/digitaltwins/{id}/components/{name}`): read one,
//! patch one with paths relative to it, and the checks telemetry shares. A component patch is
//! a twin patch under `/{name}`, so it lands (and moves the twin's ETag) exactly as one; what
//! differs is how it is refused, in the live service's words (ADT-REFERENCE.md §1.2).

use serde_json::Value;

use crate::validate::{check_value, SchemaContext};

use super::error::AdtFailure;
use super::patch::{PatchKind, PatchOp};
use super::twins::TwinUpdate;
use super::{IfMatch, Store};

impl Store {
    /// `GET …/components/{name}`: the component (its properties and `$metadata`) as JSON, and
    /// the twin's ETag.
    pub fn get_component(&self, id: &str, name: &str) -> Result<(Vec<u8>, String), AdtFailure> {
        let (twin, _) = self.component_model(id, name)?;
        let component = twin.contents.get(name).ok_or_else(|| AdtFailure::component_not_found(id, name))?;
        Ok((serde_json::to_vec(component).unwrap_or_default(), twin.etag.clone()))
    }

    /// Checks that the twin exists and its model declares the component; returns the twin and
    /// the component's Interface DTMI. Also the check behind component telemetry.
    pub fn component_model(
        &self,
        id: &str,
        name: &str,
    ) -> Result<(std::sync::Arc<super::TwinRecord>, String), AdtFailure> {
        let (twin, model) = self.twin_and_model(id)?;
        let component_model =
            model.resolved.components.get(name).cloned().ok_or_else(|| AdtFailure::component_not_found(id, name))?;
        Ok((twin, component_model))
    }

    /// Checks `PATCH …/components/{name}`: the twin and component exist, `If-Match` holds, every
    /// property is one the component's Interface declares with a value of its type (400
    /// `ValidationFailed` with the live details), and the patched twin is valid. Commit the
    /// result with `commit_twin_update`.
    pub fn prepare_component_update(
        &self,
        id: &str,
        name: &str,
        ops: Vec<PatchOp>,
        if_match: Option<IfMatch>,
    ) -> Result<TwinUpdate, AdtFailure> {
        let (twin, component_model) = self.component_model(id, name)?;
        IfMatch::check(if_match.as_ref(), &twin.etag, &format!("twin {id}"))?;
        let models = self.models();
        let declared = models.get(&component_model).map(|m| &m.resolved);
        for op in &ops {
            let Some(property) = op.path.first().filter(|p| p.as_str() != "$metadata") else { continue };
            let Some((resolved, schema)) = declared.and_then(|d| d.properties.get(property).map(|s| (d, s))) else {
                return Err(AdtFailure::twin_invalid(format!("{property} does not appear on the DTDL for {name}.")));
            };
            if op.kind == PatchKind::Remove || op.path.len() > 1 {
                continue;
            }
            // The type alone here (string sizes are checked with the whole twin below), so the
            // live wording fits.
            let ctx = SchemaContext { named_schemas: &resolved.named_schemas, max_string_bytes: usize::MAX };
            if check_value(schema, &op.value, ctx, property).is_err() {
                return Err(AdtFailure::twin_invalid(format!(
                    "Expected value of type {} for {property} on {name}.",
                    schema_name(schema)
                )));
            }
        }
        let ops = ops.into_iter().map(|op| under_component(name, op)).collect();
        self.prepare_twin_update(id, ops, if_match)
    }
}

/// A component's patch operation as the twin patch it is: its path under `/{name}`.
fn under_component(name: &str, mut op: PatchOp) -> PatchOp {
    op.path.insert(0, name.to_string());
    op.path_text = format!("/{}{}", name.replace('~', "~0").replace('/', "~1"), op.path_text);
    op
}

/// A DTDL schema as a message names it: the primitive, or a complex schema's `@type`.
fn schema_name(schema: &Value) -> String {
    match schema {
        Value::String(name) => name.clone(),
        Value::Object(complex) => complex.get("@type").and_then(Value::as_str).unwrap_or("object").to_ascii_lowercase(),
        other => other.to_string(),
    }
}
