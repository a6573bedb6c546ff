//! The ADT REST client.
