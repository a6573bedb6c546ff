//! An Import-Jobs NDJSON input, read and planned as `twinload plan` does: no panic, no hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use twinload::limits::Limits;
use twinload::plan::{Plan, PlanOptions};
use twinload::source::ndjson::NdjsonSource;
use twinload::source::Source;

fuzz_target!(|data: &[u8]| {
    let source = Box::new(NdjsonSource::new("fuzz.ndjson".into(), Box::new(std::io::Cursor::new(data.to_vec()))));
    let plan = Plan::build(source.items(), &PlanOptions::new(Limits::adt_default()));
    let _ = plan.counts();
    let _ = plan.makespan();
});
