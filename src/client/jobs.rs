//! The calls `crate::import_job` makes: the Import Jobs API (create, get, cancel; jobs class,
//! 1 request/s) and the twin count that tells a first load (`SELECT COUNT() FROM DIGITALTWINS`).
//! One attempt each, like every call of this client; non-2xx answers are [`ClientError`]s.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Url};
use serde::Deserialize;

use super::{AdtClient, ClientError};
use crate::adt::{paths, AdtError};
use crate::limits::LimitClass;

/// An import job as the service shows it (the fields the loader uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportJobInfo {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub error: Option<AdtError>,
}

impl ImportJobInfo {
    /// True once the job has ended (succeeded, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

#[derive(Deserialize)]
struct CountPage {
    value: Vec<CountRow>,
}

#[derive(Deserialize)]
struct CountRow {
    #[serde(rename = "COUNT")]
    count: u64,
}

impl AdtClient {
    /// `PUT /jobs/imports/{id}` with the input and output blob URLs.
    pub async fn create_import_job(&self, id: &str, input: &str, output: &str) -> Result<ImportJobInfo, ClientError> {
        let body = serde_json::json!({"inputBlobUri": input, "outputBlobUri": output}).to_string();
        let url = self.url(&paths::import_job(id));
        self.job_call(Method::PUT, url, Some(body)).await
    }

    /// `GET /jobs/imports/{id}`.
    pub async fn import_job(&self, id: &str) -> Result<ImportJobInfo, ClientError> {
        self.job_call(Method::GET, self.url(&paths::import_job(id)), None).await
    }

    /// `POST /jobs/imports/{id}/cancel`.
    pub async fn cancel_import_job(&self, id: &str) -> Result<ImportJobInfo, ClientError> {
        self.job_call(Method::POST, self.url(&paths::import_job_cancel(id)), None).await
    }

    /// How many twins the instance holds (`SELECT COUNT() FROM DIGITALTWINS`; the query index
    /// may lag writes by up to 10 s).
    pub async fn count_twins(&self) -> Result<u64, ClientError> {
        let url = self.url("/query");
        let body = r#"{"query":"SELECT COUNT() FROM DIGITALTWINS"}"#.to_string();
        let bytes = self.call_ok(LimitClass::Query, Method::POST, url.clone(), Some(body)).await?;
        let page: CountPage = serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
            url: url.to_string(),
            detail: format!("not a COUNT() answer: {e}"),
        })?;
        Ok(page.value.first().map_or(0, |row| row.count))
    }

    async fn job_call(&self, method: Method, url: Url, body: Option<String>) -> Result<ImportJobInfo, ClientError> {
        let bytes = self.call_ok(LimitClass::Jobs, method, url.clone(), body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Unexpected { url: url.to_string(), detail: format!("not an import job: {e}") })
    }

    /// One request with an optional JSON body; non-2xx answers become [`ClientError`]s.
    async fn call_ok(
        &self,
        class: LimitClass,
        method: Method,
        url: Url,
        body: Option<String>,
    ) -> Result<bytes::Bytes, ClientError> {
        let shown = url.to_string();
        let mut request = self.request(method.clone(), url);
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        self.send_ok(class, method.as_str(), shown, request).await
    }
}
