//! The calls a sync makes besides PUT: JSON Patch and DELETE of twins and relationships (as
//! classified [`Reply`]s, for the supervisor's rules), GET of one document, and the query API
//! (`POST /query`, paged by `continuationToken`) that reads what ADT holds.

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::limits::LimitClass;

use super::{AdtClient, ClientError, Reply, Sent};

/// One page of a query's answer. Rows stay JSON text: a caller that keeps them (the sync's view of
/// the instance) holds a tenth of the memory a parsed `Value` takes.
#[derive(Debug, Deserialize)]
pub struct QueryPage {
    pub value: Vec<Box<serde_json::value::RawValue>>,
    #[serde(rename = "continuationToken", default)]
    pub continuation_token: Option<String>,
}

impl AdtClient {
    /// `PATCH` of a twin or relationship path with a JSON Patch document (`application/json-patch+json`).
    pub async fn patch(&self, path: &str, patch: String, relationship: bool) -> Reply {
        let req =
            self.request(Method::PATCH, self.url(path)).header(CONTENT_TYPE, "application/json-patch+json").body(patch);
        self.send(LimitClass::Patch, req, Sent { create_only: false, relationship }).await
    }

    /// `DELETE` of a twin or relationship path.
    pub async fn delete(&self, path: &str) -> Reply {
        let req = self.request(Method::DELETE, self.url(path));
        self.send(LimitClass::CreateDelete, req, Sent::default()).await
    }

    /// `GET` of a twin or relationship: `None` when ADT says it is not there (404).
    pub async fn get_document(&self, path: &str) -> Result<Option<Value>, ClientError> {
        match self.get_ok(LimitClass::Read, self.url(path)).await {
            Ok(body) => serde_json::from_slice(&body).map(Some).map_err(|e| ClientError::Unexpected {
                url: self.url(path).to_string(),
                detail: format!("not a JSON document: {e}"),
            }),
            Err(ClientError::Status(e)) if e.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The (source, relationship id) of every relationship leaving (`incoming` false) or
    /// reaching (`incoming` true) a twin, following `nextLink`; empty when the twin is gone.
    pub async fn list_relationships(&self, twin: &str, incoming: bool) -> Result<Vec<(String, String)>, ClientError> {
        #[derive(Deserialize)]
        struct Page {
            value: Vec<Value>,
            #[serde(rename = "nextLink", default)]
            next_link: Option<String>,
        }
        let suffix = if incoming { "incomingrelationships" } else { "relationships" };
        let mut url = self.url(&format!("{}/{suffix}", crate::adt::paths::twin(twin)));
        let mut found = Vec::new();
        for _ in 0..super::MAX_LIST_PAGES {
            let body = match self.get_ok(LimitClass::Read, url.clone()).await {
                Ok(b) => b,
                Err(ClientError::Status(e)) if e.status == 404 => return Ok(found),
                Err(e) => return Err(e),
            };
            let page: Page = serde_json::from_slice(&body).map_err(|e| ClientError::Unexpected {
                url: url.to_string(),
                detail: format!("not a relationship list: {e}"),
            })?;
            for row in page.value {
                let source = row.get("$sourceId").and_then(Value::as_str);
                let id = row.get("$relationshipId").and_then(Value::as_str);
                if let (Some(s), Some(i)) = (source, id) {
                    found.push((s.to_string(), i.to_string()));
                }
            }
            match page.next_link {
                Some(link) if !link.is_empty() => url = self.next_link(&link)?,
                _ => return Ok(found),
            }
        }
        Err(ClientError::Unexpected { url: url.to_string(), detail: "too many pages of relationships".into() })
    }

    /// One page of `query` (first page: `token` is `None`), `page_size` rows at most.
    pub async fn query_page(
        &self,
        query: &str,
        token: Option<&str>,
        page_size: usize,
    ) -> Result<QueryPage, ClientError> {
        let url = self.url("/query");
        let shown = url.to_string();
        let body = match token {
            Some(t) => serde_json::json!({ "continuationToken": t }),
            None => serde_json::json!({ "query": query }),
        };
        let req = self
            .request(Method::POST, url)
            .header(CONTENT_TYPE, "application/json")
            .header("max-items-per-page", page_size.to_string())
            .body(body.to_string());
        let bytes = self.send_ok(LimitClass::Query, "POST", shown.clone(), req).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Unexpected { url: shown, detail: format!("not a query page: {e}") })
    }
}
