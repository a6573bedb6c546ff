//! Account SAS tokens (Azure Storage "account shared access signature", signed version
//! 2020-02-10), signed with HMAC-SHA256 over the account key. The azure_storage_blob 1.x crates
//! have no shared-key auth, so tests sign their own SAS for Azurite's well-known key.
//!
//! String to sign (sv 2020-02-10): account, sp, ss, srt, st, se, sip, spr, sv, each followed by
//! a newline (learn.microsoft.com/rest/api/storageservices/create-account-sas).

use base64::Engine as _;

/// Azurite's well-known development account and key (public, documented by Azurite).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const SIGNED_VERSION: &str = "2020-02-10";

/// An account SAS query string (without `?`) for the Blob service: all resource types, the
/// given permissions (e.g. "rwdlac"), valid until `expiry` (RFC 3339, e.g. 2099-01-01T00:00:00Z).
pub fn account_sas(account: &str, key_base64: &str, permissions: &str, expiry: &str) -> String {
    let (services, resource_types, protocol) = ("b", "sco", "https,http");
    let string_to_sign =
        format!("{account}\n{permissions}\n{services}\n{resource_types}\n\n{expiry}\n\n{protocol}\n{SIGNED_VERSION}\n");
    let signature = sign(key_base64, &string_to_sign);
    form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", SIGNED_VERSION)
        .append_pair("ss", services)
        .append_pair("srt", resource_types)
        .append_pair("sp", permissions)
        .append_pair("se", expiry)
        .append_pair("spr", protocol)
        .append_pair("sig", &signature)
        .finish()
}

/// Base64(HMAC-SHA256(base64-decoded key, text)).
pub fn sign(key_base64: &str, text: &str) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(key_base64).expect("the account key is base64");
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key), text.as_bytes());
    engine.encode(tag.as_ref())
}

/// A SAS for Azurite's account with every permission, valid for years.
pub fn azurite_sas() -> String {
    account_sas(AZURITE_ACCOUNT, AZURITE_KEY, "rwdlac", "2099-01-01T00:00:00Z")
}
