//! A DTDL model file (one interface or an array), read and planned: no panic, no hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use twinload::limits::Limits;
use twinload::plan::{Plan, PlanOptions};
use twinload::source::dtdl_files::DtdlFileSource;
use twinload::source::Source;

fuzz_target!(|data: &[u8]| {
    let source = Box::new(DtdlFileSource::new("fuzz.json".into(), Box::new(std::io::Cursor::new(data.to_vec()))));
    let plan = Plan::build(source.items(), &PlanOptions::new(Limits::adt_default()));
    let _ = plan.model_batches();
});
