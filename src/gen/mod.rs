//! `twinload gen`: a synthetic fleet, written as ADT Import-Jobs NDJSON, deterministic by seed
//! (the same options always give a byte-identical file).
//!
//! DTDL v2 models with inheritance and a component ([`models`]); an organisation, its regions,
//! depots, vehicles and parts, with properties that validate against the models; relationships
//! declared on the models (`contains`, `hosts`, `hasPart`, and cross links `servicedAt` and
//! `locatedNear`) so that there are about `relationships_per_twin × twins` of them; optional hub
//! twins that each `monitor` `hub_degree` others. The fleet's shape is computed from indexes
//! ([`fleet`]), so a million twins stream out without being held in memory.
//!
//! [`generate`] is the library entry point (the demo and tests call it); [`run`] is the command.

pub mod fleet;
pub mod models;

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use fleet::{mix, spread, Kind, Layout};

use crate::limits::Limits;

/// Fewest twins a fleet can have: one of each kind (organisation, region, depot, vehicle, part).
pub const MIN_TWINS: u64 = 5;
/// Most twins: ADT's default cap per instance.
pub const MAX_TWINS: u64 = 2_000_000;
/// Most relationships per twin asked for on average.
pub const MAX_RELATIONSHIPS_PER_TWIN: f64 = 100.0;
/// Default relationships per twin.
pub const DEFAULT_RELATIONSHIPS_PER_TWIN: f64 = 2.0;
/// Default relationships per hub.
pub const DEFAULT_HUB_DEGREE: u64 = 20_000;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    /// All twins, hubs included.
    pub twins: u64,
    pub seed: u64,
    /// Relationships per twin on average, hubs' relationships not counted. Below about 1.0
    /// the containment tree itself is thinned.
    pub relationships_per_twin: f64,
    pub hubs: u64,
    /// Relationships out of each hub.
    pub hub_degree: u64,
}

impl GenOptions {
    pub fn new(twins: u64, seed: u64) -> GenOptions {
        GenOptions {
            twins,
            seed,
            relationships_per_twin: DEFAULT_RELATIONSHIPS_PER_TWIN,
            hubs: 0,
            hub_degree: DEFAULT_HUB_DEGREE,
        }
    }

    fn check(&self) -> io::Result<()> {
        let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
        if self.twins < MIN_TWINS + self.hubs || self.twins > MAX_TWINS {
            return bad(format!(
                "--twins must be between {} (one of each kind, plus the hubs) and {MAX_TWINS}, got {}",
                MIN_TWINS + self.hubs,
                self.twins
            ));
        }
        if !self.relationships_per_twin.is_finite()
            || !(0.0..=MAX_RELATIONSHIPS_PER_TWIN).contains(&self.relationships_per_twin)
        {
            return bad(format!(
                "--relationships-per-twin must be between 0 and {MAX_RELATIONSHIPS_PER_TWIN}, got {}",
                self.relationships_per_twin
            ));
        }
        // ADT takes at most so many relationships out of one twin, and as many into one: a
        // fleet past that could never be loaded (and --hub-degree 10000000 wrote 8.9 GB).
        let max = Limits::adt_default().max_relationships_per_twin as u64;
        if self.hub_degree > max {
            return bad(format!(
                "--hub-degree must be at most {max}, ADT's limit of relationships out of one twin, got {}",
                self.hub_degree
            ));
        }
        let layout = Layout::new(self.twins, self.hubs);
        let targets = layout.vehicles + layout.parts;
        if self.hubs.saturating_mul(self.hub_degree) > max.saturating_mul(targets) {
            return bad(format!(
                "--hubs {} × --hub-degree {} would give each of the {targets} vehicles and parts more than {max} incoming relationships on average, ADT's limit into one twin; use fewer hubs, a lower degree or more twins",
                self.hubs, self.hub_degree
            ));
        }
        Ok(())
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct GenStats {
    pub models: u64,
    pub twins: u64,
    pub relationships: u64,
    pub bytes: u64,
}

/// Streams of the pseudo-random generator, one per kind of choice.
mod streams {
    pub const PROPS: u64 = 1;
    pub const LINK: u64 = 2;
    pub const HUB: u64 = 3;
}

/// Writes the fleet as Import-Jobs NDJSON. Errors: invalid options (`InvalidInput`) or the
/// writer's own.
pub fn generate(opts: &GenOptions, w: impl Write) -> io::Result<GenStats> {
    opts.check()?;
    let mut out = Counting { inner: BufWriter::with_capacity(1 << 20, w), bytes: 0 };
    let layout = Layout::new(opts.twins, opts.hubs);
    let mut stats = GenStats::default();
    let mut line = String::with_capacity(1024);

    out.line("{\"Section\": \"Header\"}")?;
    out.line(&format!(
        "{{\"fileVersion\": \"1.0.0\", \"author\": \"twinload gen\", \"organization\": \"twinload\", \"seed\": {}, \"twins\": {}}}",
        opts.seed, opts.twins
    ))?;
    out.line("{\"Section\": \"Models\"}")?;
    for model in models::all() {
        out.line(&model.to_string())?;
        stats.models += 1;
    }

    out.line("{\"Section\": \"Twins\"}")?;
    let twins = Twins { seed: opts.seed, layout };
    twins.organisation(&mut line);
    out.line(&line)?;
    for g in 0..layout.assets() {
        twins.asset(g, &mut line);
        out.line(&line)?;
    }
    for h in 0..layout.hubs {
        twins.hub(h, &mut line);
        out.line(&line)?;
    }
    stats.twins = layout.twins();

    out.line("{\"Section\": \"Relationships\"}")?;
    let target_total = (opts.relationships_per_twin * opts.twins as f64).round() as u64;
    let tree_kept = target_total.min(layout.assets());
    let links = Links { seed: opts.seed, layout, tree_kept, extra: target_total - tree_kept };
    let mut emit = |line: &str| -> io::Result<()> {
        stats.relationships += 1;
        out.line(line)
    };
    links.organisation(&mut line, &mut emit)?;
    for g in 0..layout.assets() {
        links.asset(g, &mut line, &mut emit)?;
    }
    for h in 0..layout.hubs {
        links.hub(h, opts.hub_degree, &mut line, &mut emit)?;
    }
    out.inner.flush()?;
    stats.bytes = out.bytes;
    Ok(stats)
}

/// A writer that counts what passes through.
struct Counting<W: Write> {
    inner: BufWriter<W>,
    bytes: u64,
}

impl<W: Write> Counting<W> {
    fn line(&mut self, text: &str) -> io::Result<()> {
        self.inner.write_all(text.as_bytes())?;
        self.inner.write_all(b"\n")?;
        self.bytes += text.len() as u64 + 1;
        Ok(())
    }
}

/// A number with one decimal, always written with its decimal point (a JSON double).
fn tenths(x: u64) -> String {
    format!("{}.{}", x / 10, x % 10)
}

fn date(r: u64) -> String {
    format!("{:04}-{:02}-{:02}", 2010 + r % 15, 1 + (r >> 8) % 12, 1 + (r >> 16) % 28)
}

fn date_time(r: u64) -> String {
    format!("{}T{:02}:{:02}:00Z", date(r), (r >> 24) % 24, (r >> 32) % 60)
}

/// Twin lines. Every property written is declared by the twin's model or its bases, with a
/// value of its schema; the vehicle's `telematics` component is always present.
struct Twins {
    seed: u64,
    layout: Layout,
}

impl Twins {
    fn random(&self, g: u64, field: u64) -> u64 {
        mix(self.seed, streams::PROPS, g, field)
    }

    /// The properties every asset has (declared on `Asset`), after the opening `{"$dtId"…`.
    fn common(&self, line: &mut String, g: u64, name: &str, external: &str) {
        let status = if self.random(g, 1) % 10 < 8 {
            models::STATUSES[0]
        } else {
            models::STATUSES[1 + (self.random(g, 2) % 2) as usize]
        };
        let _ = write!(
            line,
            ",\"name\":\"{name}\",\"externalId\":\"{external}\",\"commissioned\":\"{}\",\"status\":\"{status}\"",
            date(self.random(g, 3))
        );
    }

    fn organisation(&self, line: &mut String) {
        line.clear();
        let _ = write!(line, "{{\"$dtId\":\"org-0\",\"$metadata\":{{\"$model\":\"{}\"}}", models::ORGANISATION);
        self.common(line, u64::MAX, "Fleet organisation", "ORG-0");
        let _ = write!(line, ",\"founded\":{},\"sector\":\"logistics\"}}", 1950 + self.random(u64::MAX, 4) % 70);
    }

    fn asset(&self, g: u64, line: &mut String) {
        line.clear();
        let (kind, i) = self.layout.asset(g);
        let id = self.layout.asset_id(g);
        let model = match kind {
            Kind::Region => models::REGION,
            Kind::Depot => models::DEPOT,
            Kind::Vehicle => models::VEHICLE,
            Kind::Part => models::PART,
        };
        let _ = write!(line, "{{\"$dtId\":\"{id}\",\"$metadata\":{{\"$model\":\"{model}\"}}");
        let r = |f| self.random(g, f);
        match kind {
            Kind::Region => {
                self.common(line, g, &format!("Region {i}"), &format!("REG-{i:05}"));
                let _ = write!(line, ",\"code\":\"R{i:04}\",\"areaKm2\":{}", tenths(1_000 + r(10) % 500_000));
            }
            Kind::Depot => {
                self.common(line, g, &format!("Depot {i}"), &format!("DEP-{i:06}"));
                let region = Layout::parent(self.layout.regions, self.layout.depots, i);
                let _ = write!(
                    line,
                    ",\"capacity\":{},\"open24h\":{},\"address\":{{\"street\":\"{} Depot Road\",\"city\":\"City {region}\",\"postcode\":\"PC{:05}\"}}",
                    20 + r(10) % 480,
                    r(11) % 3 == 0,
                    1 + r(12) % 300,
                    r(13) % 100_000
                );
            }
            Kind::Vehicle => {
                self.common(line, g, &format!("Vehicle {i}"), &format!("VEH-{i:07}"));
                let fuel = models::FUELS[(r(11) % models::FUELS.len() as u64) as usize];
                let _ = write!(
                    line,
                    ",\"tags\":{{\"fleet\":\"fleet-{}\",\"colour\":\"{}\"}},\"plate\":\"TL{i:06}\",\"mileageKm\":{},\"fuel\":\"{fuel}\",\"lastService\":\"{}\"",
                    r(14) % 20,
                    ["white", "red", "blue", "silver"][(r(15) % 4) as usize],
                    tenths(r(10) % 4_000_000),
                    date_time(r(12))
                );
                let _ = write!(
                    line,
                    ",\"telematics\":{{\"$metadata\":{{}},\"firmware\":\"{}.{}.{}\",\"online\":{},\"signalDbm\":-{},\"lastSeen\":\"{}\"}}",
                    1 + r(16) % 5,
                    r(17) % 10,
                    r(18) % 20,
                    r(19) % 10 != 0,
                    40 + r(20) % 70,
                    date_time(r(21))
                );
            }
            Kind::Part => {
                self.common(line, g, &format!("Part {i}"), &format!("PRT-{i:08}"));
                let _ = write!(
                    line,
                    ",\"partNumber\":\"P-{:05}\",\"weightKg\":{},\"critical\":{}",
                    r(10) % 100_000,
                    tenths(1 + r(11) % 5_000),
                    r(12) % 7 == 0
                );
            }
        }
        line.push('}');
    }

    fn hub(&self, h: u64, line: &mut String) {
        line.clear();
        let key = u64::MAX - 1 - h;
        let _ = write!(line, "{{\"$dtId\":\"hub-{h}\",\"$metadata\":{{\"$model\":\"{}\"}}", models::HUB);
        self.common(line, key, &format!("Hub {h}"), &format!("HUB-{h:03}"));
        let _ = write!(line, ",\"zone\":\"zone-{h}\"}}");
    }
}

/// Relationship lines, grouped by source twin; ids `<name>-<n>`, numbered per source.
struct Links {
    seed: u64,
    layout: Layout,
    /// Containment edges kept (all of them unless fewer relationships were asked for).
    tree_kept: u64,
    /// Cross links on top of the containment tree.
    extra: u64,
}

impl Links {
    fn write(line: &mut String, source: &str, n: u64, name: &str, target: &str, props: &str) {
        line.clear();
        let _ = write!(line, "{{\"$dtId\":\"{source}\",\"$relationshipId\":\"{name}-{n}\",\"$targetId\":\"{target}\",\"$relationshipName\":\"{name}\"{props}}}");
    }

    /// Whether the containment edge into asset `g` is written.
    fn tree_edge_kept(&self, g: u64) -> bool {
        spread(self.tree_kept, self.layout.assets(), g) == 1
    }

    fn organisation(&self, line: &mut String, emit: &mut impl FnMut(&str) -> io::Result<()>) -> io::Result<()> {
        let mut n = 0;
        for r in 0..self.layout.regions {
            let g = self.layout.global(Kind::Region, r);
            if self.tree_edge_kept(g) {
                Self::write(line, "org-0", n, "contains", &self.layout.asset_id(g), "");
                emit(line)?;
                n += 1;
            }
        }
        Ok(())
    }

    fn asset(&self, g: u64, line: &mut String, emit: &mut impl FnMut(&str) -> io::Result<()>) -> io::Result<()> {
        let layout = &self.layout;
        let (kind, i) = layout.asset(g);
        let source = layout.asset_id(g);
        let mut n = 0;
        if let Some(child_kind) = Layout::child_kind(kind) {
            let (name, props) = match kind {
                Kind::Region => ("contains", String::new()),
                Kind::Depot => ("hosts", format!(",\"since\":\"{}\"", date(mix(self.seed, streams::LINK, g, 0)))),
                _ => ("hasPart", String::new()),
            };
            for (position, j) in Layout::children(layout.count(kind), layout.count(child_kind), i).enumerate() {
                let child = layout.global(child_kind, j);
                if !self.tree_edge_kept(child) {
                    continue;
                }
                let props = if kind == Kind::Vehicle {
                    format!(
                        ",\"installedOn\":\"{}\",\"position\":{position}",
                        date(mix(self.seed, streams::LINK, child, 1))
                    )
                } else {
                    props.clone()
                };
                Self::write(line, &source, n, name, &layout.asset_id(child), &props);
                emit(line)?;
                n += 1;
            }
        }
        for k in 0..spread(self.extra, layout.assets(), g) {
            let r = mix(self.seed, streams::LINK, g, 100 + k);
            if kind == Kind::Vehicle && k == 0 {
                let depot = layout.global(Kind::Depot, r % layout.depots);
                let contract = ["standard", "premium", "on-call"][((r >> 32) % 3) as usize];
                Self::write(
                    line,
                    &source,
                    n,
                    "servicedAt",
                    &layout.asset_id(depot),
                    &format!(",\"contract\":\"{contract}\""),
                );
            } else {
                let mut target = r % layout.assets();
                if target == g {
                    target = (target + 1) % layout.assets();
                }
                let distance = tenths(1 + (r >> 20) % 2_000);
                Self::write(
                    line,
                    &source,
                    n,
                    "locatedNear",
                    &layout.asset_id(target),
                    &format!(",\"distanceKm\":{distance}"),
                );
            }
            emit(line)?;
            n += 1;
        }
        Ok(())
    }

    /// A hub monitors vehicles and parts, chosen at random (a twin may be picked twice).
    fn hub(
        &self,
        h: u64,
        degree: u64,
        line: &mut String,
        emit: &mut impl FnMut(&str) -> io::Result<()>,
    ) -> io::Result<()> {
        let layout = &self.layout;
        let first = layout.global(Kind::Vehicle, 0);
        let candidates = layout.vehicles + layout.parts;
        let source = format!("hub-{h}");
        for n in 0..degree {
            let r = mix(self.seed, streams::HUB, h, n);
            let target = layout.asset_id(first + r % candidates);
            Self::write(line, &source, n, "monitors", &target, &format!(",\"priority\":{}", 1 + (r >> 40) % 5));
            emit(line)?;
        }
        Ok(())
    }
}

/// `twinload gen` flags.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Twins in the fleet (hubs included).
    #[arg(long)]
    pub twins: u64,
    /// Seed: the same seed and options give a byte-identical file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The NDJSON file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Relationships per twin on average, hubs' relationships not counted.
    #[arg(long, default_value_t = DEFAULT_RELATIONSHIPS_PER_TWIN)]
    pub relationships_per_twin: f64,
    /// Hub twins, each with --hub-degree relationships.
    #[arg(long, default_value_t = 0)]
    pub hubs: u64,
    /// Relationships out of each hub.
    #[arg(long, default_value_t = DEFAULT_HUB_DEGREE)]
    pub hub_degree: u64,
}

pub fn run(args: GenArgs) -> anyhow::Result<crate::exit::ExitStatus> {
    let opts = GenOptions {
        twins: args.twins,
        seed: args.seed,
        relationships_per_twin: args.relationships_per_twin,
        hubs: args.hubs,
        hub_degree: args.hub_degree,
    };
    if let Err(e) = opts.check() {
        crate::diag!("error: {e}");
        return Ok(crate::exit::ExitStatus::Usage);
    }
    let file =
        std::fs::File::create(&args.out).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.out.display()))?;
    let started = std::time::Instant::now();
    let stats = generate(&opts, file).map_err(|e| anyhow::anyhow!("writing {}: {e}", args.out.display()))?;
    crate::diag!(
        "wrote {}: {} models, {} twins, {} relationships, {} bytes in {:.1} s (seed {})",
        args.out.display(),
        stats.models,
        stats.twins,
        stats.relationships,
        stats.bytes,
        started.elapsed().as_secs_f64(),
        opts.seed
    );
    Ok(crate::exit::ExitStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::{HashMap, HashSet};

    fn lines(opts: &GenOptions) -> (GenStats, Vec<String>) {
        let mut buf = Vec::new();
        let stats = generate(opts, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        (stats, text.lines().map(str::to_string).collect())
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let opts = GenOptions::new(1_000, 7);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        generate(&opts, &mut a).unwrap();
        generate(&opts, &mut b).unwrap();
        generate(&GenOptions { seed: 8, ..opts }, &mut c).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn counts_ids_and_sections_are_as_asked() {
        let opts = GenOptions { hubs: 2, hub_degree: 300, ..GenOptions::new(2_000, 3) };
        let (stats, lines) = lines(&opts);
        assert_eq!(stats.bytes, lines.iter().map(|l| l.len() as u64 + 1).sum::<u64>());
        let sections: Vec<usize> =
            lines.iter().enumerate().filter(|(_, l)| l.starts_with("{\"Section\"")).map(|(i, _)| i).collect();
        assert_eq!(sections.len(), 4);
        let twins = &lines[sections[2] + 1..sections[3]];
        let rels = &lines[sections[3] + 1..];
        assert_eq!((stats.twins, twins.len() as u64), (2_000, 2_000));
        assert_eq!(stats.relationships, rels.len() as u64);
        // 2 per twin, plus the hubs' own.
        assert_eq!(stats.relationships, 2 * 2_000 + 2 * 300);

        let mut twin_ids = HashSet::new();
        for t in twins {
            let v: Value = serde_json::from_str(t).unwrap();
            assert!(twin_ids.insert(v["$dtId"].as_str().unwrap().to_string()), "twin ids are unique");
        }
        let mut rel_keys = HashSet::new();
        for r in rels {
            let v: Value = serde_json::from_str(r).unwrap();
            let key = (v["$dtId"].as_str().unwrap().to_string(), v["$relationshipId"].as_str().unwrap().to_string());
            assert!(
                twin_ids.contains(&key.0) && twin_ids.contains(v["$targetId"].as_str().unwrap()),
                "both ends are twins of the fleet: {r}"
            );
            assert_ne!(v["$dtId"], v["$targetId"], "no self links");
            assert!(rel_keys.insert(key), "relationship ids are unique per source: {r}");
        }
    }

    #[test]
    fn twins_and_relationships_use_only_what_their_models_declare() {
        let (_, lines) = lines(&GenOptions { hubs: 1, hub_degree: 50, ..GenOptions::new(1_200, 5) });
        let models: Vec<crate::dtdl::Interface> =
            models::all().iter().map(|m| crate::dtdl::Interface::parse(m).unwrap()).collect();
        let by_id: HashMap<&str, &crate::dtdl::Interface> = models.iter().map(|m| (m.id.as_str(), m)).collect();
        // Declarations of a model and its bases.
        let chain = |id: &str| {
            let mut out = vec![by_id[id]];
            while let Some(parent) = out.last().unwrap().extends.first() {
                out.push(by_id[parent.as_str()]);
            }
            out
        };
        let mut model_of = HashMap::new();
        let mut section = "";
        for line in &lines {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(s) = v.get("Section").and_then(Value::as_str) {
                section = if s == "Twins" || s == "Relationships" {
                    if s == "Twins" {
                        "t"
                    } else {
                        "r"
                    }
                } else {
                    ""
                };
                continue;
            }
            match section {
                "t" => {
                    let model = v["$metadata"]["$model"].as_str().unwrap();
                    let decls = chain(model);
                    for (key, value) in v.as_object().unwrap() {
                        if key.starts_with('$') {
                            continue;
                        }
                        let declared = decls.iter().any(|d| {
                            d.properties.iter().any(|p| &p.name == key) || d.components.iter().any(|c| &c.name == key)
                        });
                        assert!(declared, "{key} of {model} is declared: {line}");
                        assert!(!value.is_null());
                    }
                    for d in &decls {
                        for c in &d.components {
                            assert!(
                                v.get(&c.name).is_some_and(|comp| comp.get("$metadata").is_some()),
                                "component {} present: {line}",
                                c.name
                            );
                        }
                    }
                    model_of.insert(v["$dtId"].as_str().unwrap().to_string(), model.to_string());
                }
                "r" => {
                    let source_model = &model_of[v["$dtId"].as_str().unwrap()];
                    let name = v["$relationshipName"].as_str().unwrap();
                    let decl =
                        chain(source_model).into_iter().flat_map(|d| d.relationships.iter()).find(|r| r.name == name);
                    let decl = decl.unwrap_or_else(|| panic!("{name} is declared on {source_model}"));
                    if let Some(target) = &decl.target {
                        let target_model = &model_of[v["$targetId"].as_str().unwrap()];
                        assert!(
                            chain(target_model).iter().any(|m| &m.id == target),
                            "{name} targets a {target}: {line}"
                        );
                    }
                    for key in v.as_object().unwrap().keys().filter(|k| !k.starts_with('$')) {
                        assert!(
                            decl.properties.iter().any(|p| &p.name == key),
                            "relationship property {key} declared: {line}"
                        );
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn fewer_relationships_than_the_tree_thin_it_and_bad_options_are_refused() {
        let (stats, _) = lines(&GenOptions { relationships_per_twin: 0.5, ..GenOptions::new(1_000, 1) });
        assert_eq!(stats.relationships, 500);
        let (stats, _) = lines(&GenOptions { relationships_per_twin: 0.0, ..GenOptions::new(1_000, 1) });
        assert_eq!(stats.relationships, 0);
        assert!(generate(&GenOptions::new(4, 1), Vec::new()).is_err());
        assert!(
            generate(&GenOptions { relationships_per_twin: f64::NAN, ..GenOptions::new(100, 1) }, Vec::new()).is_err()
        );
    }
}
