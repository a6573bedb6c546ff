//! The parts of DTDL (v2 and v3) that both the planner and the mock need: DTMI syntax, and an
//! interface's references (extends, component schemas) and declared contents.

pub mod dtmi;
pub mod interface;

pub use dtmi::{validate_dtmi, validate_interface_dtmi, DtmiError};
pub use interface::{DtdlError, Interface, PropertyDecl, RelationshipDecl};
