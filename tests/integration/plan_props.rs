//! Properties of the read planner on random tag sets and limits: every
//! plannable tag is read exactly once, within the limits, by as few
//! requests as a dynamic program finds; and a plan driven by the poller
//! loop against a device with random unsupported addresses converges,
//! within a bound, to reading every supported tag and marking only the
//! tags that really touch an unsupported address.

use std::collections::{BTreeMap, BTreeSet};

use fieldgate::modbus::plan::{Limits, PlanChange, ReadPlan, Request, plan};
use fieldgate::tag::{Area, DataType, Tag};
use proptest::prelude::*;

/// The largest count the protocol allows, independent of the crate.
fn protocol_max(area: Area) -> u32 {
    if area.is_bit() { 2000 } else { 125 }
}

/// The limit the planner must respect for `area`: the configured one,
/// clamped to 1..=the protocol maximum.
fn effective_limit(limits: Limits, area: Area) -> u32 {
    let configured = if area.is_bit() {
        limits.max_bits
    } else {
        limits.max_registers
    };
    u32::from(configured).clamp(1, protocol_max(area))
}

/// First and last address (inclusive, as u32) of a tag that some request
/// can read, or `None` for a tag every request must leave out.
fn range(tag: &Tag, limits: Limits) -> Option<(u32, u32)> {
    let width = u32::from(tag.width());
    let start = u32::from(tag.address);
    let last = start + width.checked_sub(1)?;
    (last <= 65535 && width <= effective_limit(limits, tag.area)).then_some((start, last))
}

fn area() -> impl Strategy<Value = Area> {
    prop_oneof![
        Just(Area::Coil),
        Just(Area::DiscreteInput),
        Just(Area::InputRegister),
        Just(Area::HoldingRegister),
    ]
}

fn register_type() -> impl Strategy<Value = DataType> {
    prop_oneof![
        4 => Just(DataType::U16),
        1 => Just(DataType::I16),
        3 => (0u8..16).prop_map(DataType::Bit),
        3 => Just(DataType::F32),
        1 => Just(DataType::U32),
        1 => Just(DataType::I32),
        1 => Just(DataType::F64),
        1 => Just(DataType::U64),
        1 => Just(DataType::Bool),
        1 => (0u16..=8).prop_map(DataType::String),
        // Wider than any register limit, or close to it.
        1 => (100u16..=140).prop_map(DataType::String),
    ]
}

fn address() -> impl Strategy<Value = u16> {
    prop_oneof![
        // Dense, so that tags overlap, alias and sit in small holes.
        8 => 0u16..160,
        // The top of the map, where `address + width` overflows.
        1 => 65_520u16..=65_535,
    ]
}

fn tag() -> impl Strategy<Value = Tag> {
    (area(), address(), register_type()).prop_map(|(area, address, register_type)| {
        let data_type = if area.is_bit() {
            DataType::Bool
        } else {
            register_type
        };
        Tag::new(format!("{area}{address}"), area, address, data_type)
    })
}

fn limits() -> impl Strategy<Value = Limits> {
    let registers = prop_oneof![8 => 1u16..=125, 1 => Just(0u16), 1 => 126u16..=400];
    let bits = prop_oneof![6 => 1u16..=40, 2 => 1u16..=2000, 1 => Just(0u16), 1 => 2001u16..=4000];
    (registers, bits, 0u16..=20).prop_map(|(max_registers, max_bits, max_gap)| Limits {
        max_registers,
        max_bits,
        max_gap,
    })
}

/// The fewest contiguous groups the sorted ranges of one area can be cut
/// into, each within `limit` and with no hole wider than `max_gap`:
/// a quadratic dynamic program that checks every group from scratch.
fn fewest_groups(sorted: &[(u32, u32)], limit: u32, max_gap: u32) -> usize {
    let feasible = |group: &[(u32, u32)]| {
        let Some(&(start, first_last)) = group.first() else {
            return true;
        };
        let mut covered_to = first_last;
        for &(s, last) in &group[1..] {
            if s > covered_to + 1 + max_gap {
                return false;
            }
            covered_to = covered_to.max(last);
        }
        covered_to - start < limit
    };
    let n = sorted.len();
    let mut best = vec![usize::MAX; n + 1];
    best[0] = 0;
    for end in 1..=n {
        for begin in 0..end {
            if best[begin] != usize::MAX && feasible(&sorted[begin..end]) {
                best[end] = best[end].min(best[begin] + 1);
            }
        }
    }
    best[n]
}

/// Checks the shape of every request against the tags and limits: one
/// area, 1..=limit, tight around its tags, no hole wider than `max_gap`
/// (when given), tags in address order, never a skipped tag.
fn check_requests(
    tags: &[Tag],
    limits: Limits,
    requests: &[Request],
    max_gap: Option<u32>,
) -> Result<(), TestCaseError> {
    for r in requests {
        prop_assert!(r.count >= 1, "{r:?}");
        prop_assert!(
            u32::from(r.count) <= effective_limit(limits, r.area),
            "{r:?}"
        );
        prop_assert!(u32::from(r.start) + u32::from(r.count) <= 65_536, "{r:?}");
        prop_assert!(!r.tags.is_empty(), "{r:?}");
        let mut ranges = Vec::new();
        for &i in &r.tags {
            let tag = &tags[i];
            prop_assert_eq!(tag.area, r.area);
            let found = range(tag, limits);
            prop_assert!(found.is_some(), "skipped tag {} in {:?}", i, r);
            if let Some(found) = found {
                ranges.push(found);
            }
        }
        // Address order, and the request covers each tag whole.
        prop_assert!(ranges.windows(2).all(|w| w[0] <= w[1]), "{r:?}");
        let first = ranges.iter().map(|&(s, _)| s).min();
        let last = ranges.iter().map(|&(_, l)| l).max();
        prop_assert_eq!(first, Some(u32::from(r.start)));
        prop_assert_eq!(last, Some(u32::from(r.start) + u32::from(r.count) - 1));
        if let Some(max_gap) = max_gap {
            let mut covered_to = u32::from(r.start);
            for &(s, l) in &ranges {
                prop_assert!(s <= covered_to + 1 + max_gap, "hole before {s} in {r:?}");
                covered_to = covered_to.max(l);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn plans_are_valid_and_minimal(
        tags in prop::collection::vec(tag(), 0..48),
        limits in limits(),
    ) {
        let requests = plan(&tags, limits);
        check_requests(&tags, limits, &requests, Some(u32::from(limits.max_gap)))?;

        // Every plannable tag in exactly one request, no other tag in any.
        let mut seen = vec![0usize; tags.len()];
        for r in &requests {
            for &i in &r.tags {
                seen[i] += 1;
            }
        }
        for (i, tag) in tags.iter().enumerate() {
            let expected = usize::from(range(tag, limits).is_some());
            prop_assert_eq!(seen[i], expected, "tag {} {:?}", i, tag);
        }
        prop_assert!(requests.len() <= tags.len());

        // Requests by area, then address.
        prop_assert!(requests.windows(2).all(|w| (w[0].area, w[0].start) < (w[1].area, w[1].start)));

        // As few requests as the reference finds, area by area.
        let mut by_area: BTreeMap<Area, Vec<(u32, u32)>> = BTreeMap::new();
        for tag in &tags {
            if let Some(found) = range(tag, limits) {
                by_area.entry(tag.area).or_default().push(found);
            }
        }
        for (area, mut sorted) in by_area {
            sorted.sort_unstable();
            let fewest = fewest_groups(&sorted, effective_limit(limits, area), u32::from(limits.max_gap));
            let planned = requests.iter().filter(|r| r.area == area).count();
            prop_assert_eq!(planned, fewest, "{}", area);
        }

        // The live plan starts from the same requests.
        let live = ReadPlan::new(&tags, limits);
        prop_assert_eq!(live.requests(), &requests[..]);
        let skipped: Vec<usize> = (0..tags.len()).filter(|&i| range(&tags[i], limits).is_none()).collect();
        prop_assert_eq!(live.skipped(), &skipped[..]);
        prop_assert!(live.unsupported().is_empty());
        let units: u32 = requests.iter().map(|r| u32::from(r.count)).sum();
        prop_assert_eq!(live.units_read(), units);
    }

    #[test]
    fn adapting_converges_to_exactly_the_unsupported_tags(
        tags in prop::collection::vec(tag(), 0..64),
        limits in limits(),
        bad in prop::collection::btree_set((area(), address()), 0..24),
        code in 1u8..=3,
        busy in 0u32..4,
    ) {
        let mut device = Device { bad, code, busy };
        let mut live = ReadPlan::new(&tags, limits);
        let plannable = tags.iter().filter(|t| range(t, limits).is_some()).count();

        let mut split_calls = 0usize;
        let mut passes = 0u32;
        loop {
            passes += 1;
            prop_assert!(passes <= busy + 2, "no convergence after {} passes", passes);
            let exceptions = poll(&tags, &mut live, &mut device, &mut split_calls)?;
            if exceptions == 0 {
                break;
            }
        }
        // Each request of n distinct ranges costs at most 2n - 1 exceptions.
        prop_assert!(split_calls <= 2 * plannable, "{} calls for {} tags", split_calls, plannable);

        check_requests(&tags, limits, live.requests(), None)?;
        let mut seen = vec![0usize; tags.len()];
        for r in live.requests() {
            prop_assert!(device.read(r).is_ok(), "{:?} still fails", r);
            for &i in &r.tags {
                seen[i] += 1;
            }
        }
        let mut marked = BTreeSet::new();
        for &(i, got_code) in live.unsupported() {
            prop_assert!(marked.insert(i), "tag {} marked twice", i);
            prop_assert_eq!(got_code, code);
            prop_assert_eq!(seen[i], 0, "tag {} both polled and unsupported", i);
            let touches = range(&tags[i], limits)
                .is_some_and(|(s, l)| (s..=l).any(|a| device.refuses(tags[i].area, a)));
            prop_assert!(touches, "tag {} {:?} marked but readable", i, tags[i]);
        }
        for (i, tag) in tags.iter().enumerate() {
            let expected = usize::from(range(tag, limits).is_some() && !marked.contains(&i));
            prop_assert_eq!(seen[i], expected, "tag {} {:?}", i, tag);
        }
    }

    #[test]
    fn other_exception_codes_change_nothing(
        tags in prop::collection::vec(tag(), 0..32),
        limits in limits(),
        code in any::<u8>().prop_filter("not 1..=3", |c| !(1..=3).contains(c)),
        index in 0usize..40,
    ) {
        let mut live = ReadPlan::new(&tags, limits);
        let before = live.requests().to_vec();
        prop_assert_eq!(live.on_exception(index, code), PlanChange::Unchanged);
        prop_assert_eq!(live.requests(), &before[..]);
        prop_assert!(live.unsupported().is_empty());
    }
}

/// A device that refuses any read touching one of `bad` with `code`,
/// after answering 06 (busy) to its first `busy` reads.
struct Device {
    bad: BTreeSet<(Area, u16)>,
    code: u8,
    busy: u32,
}

impl Device {
    fn refuses(&self, area: Area, address: u32) -> bool {
        u16::try_from(address).is_ok_and(|a| self.bad.contains(&(area, a)))
    }

    fn read(&mut self, r: &Request) -> Result<(), u8> {
        if self.busy > 0 {
            self.busy -= 1;
            return Err(6);
        }
        let start = u32::from(r.start);
        let end = start + u32::from(r.count);
        if (start..end).any(|a| self.refuses(r.area, a)) {
            return Err(self.code);
        }
        Ok(())
    }
}

/// Distinct tag ranges of a request: what each split must reduce.
fn distinct_ranges(tags: &[Tag], r: &Request) -> usize {
    r.tags
        .iter()
        .map(|&i| (tags[i].address, tags[i].width()))
        .collect::<BTreeSet<_>>()
        .len()
}

/// One pass of the poller loop; returns how many exceptions it met and
/// counts the calls that split or removed in `split_calls`. Checks that
/// each split happens in place, keeps the tags and shrinks every piece.
fn poll(
    tags: &[Tag],
    live: &mut ReadPlan,
    device: &mut Device,
    split_calls: &mut usize,
) -> Result<usize, TestCaseError> {
    let mut exceptions = 0;
    let mut i = 0;
    while i < live.requests().len() {
        let request = live.requests()[i].clone();
        let Err(code) = device.read(&request) else {
            i += 1;
            continue;
        };
        exceptions += 1;
        let before = live.requests().len();
        match live.on_exception(i, code) {
            PlanChange::Split { at, count } => {
                *split_calls += 1;
                prop_assert_eq!(at, i);
                prop_assert!(count >= 2);
                prop_assert_eq!(live.requests().len(), before + count - 1);
                let pieces = &live.requests()[at..at + count];
                let mut old: Vec<usize> = request.tags.clone();
                let mut new: Vec<usize> = pieces.iter().flat_map(|p| p.tags.clone()).collect();
                old.sort_unstable();
                new.sort_unstable();
                prop_assert_eq!(old, new);
                for p in pieces {
                    prop_assert_eq!(p.area, request.area);
                    prop_assert!(p.count <= request.count);
                    prop_assert!(distinct_ranges(tags, p) < distinct_ranges(tags, &request));
                }
            }
            PlanChange::Unsupported {
                tags: removed,
                code: got,
            } => {
                *split_calls += 1;
                prop_assert_eq!(got, code);
                prop_assert_eq!(distinct_ranges(tags, &request), 1);
                prop_assert_eq!(removed, request.tags);
                prop_assert_eq!(live.requests().len(), before - 1);
            }
            PlanChange::Unchanged => {
                prop_assert!(!(1..=3).contains(&code));
                prop_assert_eq!(live.requests().len(), before);
                i += 1;
            }
        }
    }
    Ok(exceptions)
}
