//! The shape of a synthetic fleet, computed from the options alone so that any twin's id, parent,
//! children and links can be worked out from its index: nothing is held in memory, and the same
//! seed always gives the same fleet.
//!
//! One organisation contains regions, which contain depots, which host vehicles, which have parts,
//! in the proportions 1 : 10 : 200 : 800 (about a thousand twins per region). Optional hubs come
//! last. "Assets" below are the twins other than the organisation and the hubs, numbered
//! 0..assets in the order regions, depots, vehicles, parts.

/// Parts of a fleet per region: regions : depots : vehicles : parts.
const SHARE_REGIONS: u64 = 1;
const SHARE_DEPOTS: u64 = 10;
const SHARE_VEHICLES: u64 = 200;
const SHARE_PARTS: u64 = 800;
const SHARE_TOTAL: u64 = SHARE_REGIONS + SHARE_DEPOTS + SHARE_VEHICLES + SHARE_PARTS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Region,
    Depot,
    Vehicle,
    Part,
}

/// How many twins of each kind, and where each kind starts in the asset numbering.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub regions: u64,
    pub depots: u64,
    pub vehicles: u64,
    pub parts: u64,
    pub hubs: u64,
}

impl Layout {
    /// `twins` counts everything: the organisation, the assets and the hubs. Needs
    /// `twins >= 5 + hubs` (one twin of each kind).
    pub fn new(twins: u64, hubs: u64) -> Layout {
        let assets = twins.saturating_sub(1 + hubs).max(4);
        let share = |s: u64| ((assets * s + SHARE_TOTAL / 2) / SHARE_TOTAL).max(1);
        let regions = share(SHARE_REGIONS);
        let depots = share(SHARE_DEPOTS);
        let vehicles = share(SHARE_VEHICLES);
        let parts = assets.saturating_sub(regions + depots + vehicles).max(1);
        Layout { regions, depots, vehicles, parts, hubs }
    }

    pub fn assets(&self) -> u64 {
        self.regions + self.depots + self.vehicles + self.parts
    }

    pub fn twins(&self) -> u64 {
        1 + self.assets() + self.hubs
    }

    /// The kind of an asset and its index within that kind.
    pub fn asset(&self, g: u64) -> (Kind, u64) {
        if g < self.regions {
            (Kind::Region, g)
        } else if g < self.regions + self.depots {
            (Kind::Depot, g - self.regions)
        } else if g < self.regions + self.depots + self.vehicles {
            (Kind::Vehicle, g - self.regions - self.depots)
        } else {
            (Kind::Part, g - self.regions - self.depots - self.vehicles)
        }
    }

    /// The asset number of a kind's `i`th twin.
    pub fn global(&self, kind: Kind, i: u64) -> u64 {
        match kind {
            Kind::Region => i,
            Kind::Depot => self.regions + i,
            Kind::Vehicle => self.regions + self.depots + i,
            Kind::Part => self.regions + self.depots + self.vehicles + i,
        }
    }

    pub fn count(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Region => self.regions,
            Kind::Depot => self.depots,
            Kind::Vehicle => self.vehicles,
            Kind::Part => self.parts,
        }
    }

    /// The twin id of an asset.
    pub fn asset_id(&self, g: u64) -> String {
        let (kind, i) = self.asset(g);
        match kind {
            Kind::Region => format!("region-{i}"),
            Kind::Depot => format!("depot-{i}"),
            Kind::Vehicle => format!("vehicle-{i}"),
            Kind::Part => format!("part-{i}"),
        }
    }

    /// The kind one level down, if any.
    pub fn child_kind(kind: Kind) -> Option<Kind> {
        match kind {
            Kind::Region => Some(Kind::Depot),
            Kind::Depot => Some(Kind::Vehicle),
            Kind::Vehicle => Some(Kind::Part),
            Kind::Part => None,
        }
    }

    /// The children (indexes within the child kind) of a parent's `p`th twin: child `j` of
    /// `c` belongs to parent `floor(j × parents / c)`, which spreads children evenly.
    pub fn children(parents: u64, children: u64, p: u64) -> std::ops::Range<u64> {
        let start = (p * children).div_ceil(parents);
        let end = ((p + 1) * children).div_ceil(parents);
        start..end
    }

    /// The parent index of child `j`.
    pub fn parent(parents: u64, children: u64, j: u64) -> u64 {
        j * parents / children
    }
}

/// How many of `total` things fall to slot `i` of `slots` when spread as evenly as possible
/// (the counts over all slots add up to `total` exactly).
pub fn spread(total: u64, slots: u64, i: u64) -> u64 {
    if slots == 0 {
        return 0;
    }
    let upto = |k: u64| (u128::from(k) * u128::from(total) / u128::from(slots)) as u64;
    upto(i + 1) - upto(i)
}

/// A deterministic pseudo-random number for (seed, what, a, b): a splitmix64 finaliser over the
/// inputs, so any value can be computed from its coordinates, in any order.
pub fn mix(seed: u64, what: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ what.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ a.rotate_left(21) ^ b.rotate_left(42);
    for _ in 0..2 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_adds_up_and_keeps_proportions() {
        for (twins, hubs) in [(5, 0), (1_000, 0), (20_000, 3), (1_000_000, 0)] {
            let l = Layout::new(twins, hubs);
            assert_eq!(l.twins(), twins, "{l:?}");
            assert!(l.regions >= 1 && l.depots >= 1 && l.vehicles >= 1 && l.parts >= 1, "{l:?}");
        }
        let l = Layout::new(1_000_000, 0);
        assert!(l.parts > 3 * l.vehicles && l.vehicles > 10 * l.depots && l.depots > 5 * l.regions, "{l:?}");
    }

    #[test]
    fn children_and_parents_agree() {
        for (parents, children) in [(3, 10), (7, 7), (10, 3), (989, 197_824)] {
            let mut seen = 0;
            for p in 0..parents {
                for j in Layout::children(parents, children, p) {
                    assert_eq!(Layout::parent(parents, children, j), p);
                    seen += 1;
                }
            }
            assert_eq!(seen, children);
        }
    }

    #[test]
    fn spread_adds_up() {
        for (total, slots) in [(10, 3), (3, 10), (1_000_000, 999_999), (0, 5)] {
            assert_eq!((0..slots).map(|i| spread(total, slots, i)).sum::<u64>(), total);
        }
    }
}
