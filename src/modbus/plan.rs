//! Read planning: which Modbus requests read a device's tags (pure).
//!
//! No tokio, no I/O, no clocks of its own (time is an argument): [`plan`]
//! turns a device's tags into requests, and [`ReadPlan`] adapts that list
//! to the exceptions the device answers with. The poller owns one
//! `ReadPlan` per device and rebuilds it on reload, which is also when
//! everything it learned is forgotten.
//!
//! # Coalescing
//!
//! Tags are grouped by area and sorted by (address, last address). The
//! sorted list is cut into contiguous groups, one request each, greedily:
//! a tag joins the open request while
//!
//! - the request, stretched to the tag's last address, stays within the
//!   area's limit ([`Limits::max_count`]: registers for FC3/FC4, bits for
//!   FC1/FC2), and
//! - the hole between what the request already covers and the tag's first
//!   address is at most [`Limits::max_gap`] registers (bits in bit areas).
//!
//! A tag that starts inside what the request already covers (an alias, a
//! second `Bit(n)` of one register, a `u16` view of an `f32`) has no hole
//! and shares the request. A tag is never split, so a tag wider than the
//! limit can never be read; such tags, and tags of width 0 or running past
//! address 65535, are left out of every request (config validation rejects
//! them; the planner only promises not to panic) and are listed by
//! [`ReadPlan::skipped`].
//!
//! Greedy is optimal here (the fewest requests among all cuts of the
//! sorted list into contiguous groups) because it stays ahead: after `k`
//! requests it has served at least as many tags as any other cut. When
//! its next request stops at a tag, that tag either breaks the count
//! limit, and so breaks it for the other cut's request too, which starts
//! no later; or it lies beyond a hole wider than `max_gap`, and the
//! earlier tags, which the other cut may have in its request, reach no
//! further into that hole than the request's own tags. `tests/integration/plan_props.rs`
//! checks the result against a dynamic program on random inputs. The cut
//! itself is one pass over the sorted tags: linear after the sort.
//!
//! # Splitting on exceptions
//!
//! A device that answers a merged read with exception 01, 02 or 03
//! (illegal function, address or value) may support every tag and not the
//! registers between them, or not some tag at all. [`ReadPlan::on_exception`]
//! replaces the failing request, in place, by smaller ones:
//!
//! 1. A request that reads holes is split into its gap-free runs, because
//!    registers no tag names are the likeliest to be unsupported and one
//!    exception then removes every hole at once.
//! 2. A gap-free request is bisected by tags (tags with identical ranges
//!    are never separated), and each half is coalesced again, so a half
//!    that lost the tag bridging its holes does not read them.
//! 3. A request whose tags all read the same registers (one tag, or
//!    aliases of it) is removed, and its tags are reported as unsupported
//!    with the exception code: the device refused exactly their registers.
//!
//! Every split leaves each new request fewer distinct tag ranges than the
//! one it replaces, so a request with `n` of them costs at most `2n - 1`
//! exceptions in all (a tree with at most `n` leaves whose inner nodes
//! have two children or more) and the whole device at most twice its
//! number of tags. Other exception codes (04
//! device failure, 06 busy, …) say nothing about addresses and leave the
//! plan unchanged. Pieces that read successfully are not merged back:
//! the plan only gets finer until the next reload.
//!
//! # Re-probing refused addresses
//!
//! An exception 01/02/03 to a single tag is not always for good: a PLC in
//! program mode refuses every address for a while. So a removed request
//! is *parked*, not forgotten: [`ReadPlan::reprobe`], called before each
//! poll with the current monotonic time, puts back every request parked
//! for at least the device's `reprobe` interval, and its tags are read
//! again. If the device refuses again, the request is parked again with a
//! fresh clock; if it answers, the tags are back for good. A parked
//! request's clock starts at the first `reprobe` call after its removal
//! (the next poll), which keeps [`ReadPlan::on_exception`] free of time.

use std::time::{Duration, Instant};

use crate::tag::{Area, Tag};

/// The most registers one FC3/FC4 read may ask for (Modbus spec, 6.3/6.4).
pub const MAX_READ_REGISTERS: u16 = 125;

/// The most bits one FC1/FC2 read may ask for (Modbus spec, 6.1/6.2).
pub const MAX_READ_BITS: u16 = 2000;

/// Per-device request limits.
///
/// Devices may cap reads below the protocol maxima (some meters answer at
/// most 40 registers); values above the maxima are clamped to them, and 0
/// is read as 1, see [`Limits::max_count`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most registers per FC3/FC4 read (default and maximum 125).
    pub max_registers: u16,
    /// Most bits per FC1/FC2 read (default and maximum 2000).
    pub max_bits: u16,
    /// Widest hole, in registers (bits in bit areas), that one request
    /// reads through to serve the tags on both sides (default 10).
    pub max_gap: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_registers: MAX_READ_REGISTERS,
            max_bits: MAX_READ_BITS,
            max_gap: 10,
        }
    }
}

impl Limits {
    /// The largest `count` one read of `area` may ask for.
    ///
    /// The configured limit clamped to `1..=` the protocol maximum: above
    /// it the device would answer exception 03 to every merged read, and 0
    /// would leave the device unpolled without a word; validation reports
    /// both, and the planner stays usable either way.
    pub fn max_count(self, area: Area) -> u16 {
        if area.is_bit() {
            self.max_bits.clamp(1, MAX_READ_BITS)
        } else {
            self.max_registers.clamp(1, MAX_READ_REGISTERS)
        }
    }
}

/// One Modbus read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Area read, which fixes the function code ([`Area::read_function`]).
    pub area: Area,
    /// First register (or bit) read.
    pub start: u16,
    /// Registers (or bits) to read; 1..=limit.
    pub count: u16,
    /// Indexes into the device's tag slice of the tags this request serves, in address order.
    pub tags: Vec<usize>,
}

/// Greedy coalescing: the minimum number of requests under these constraints. Tags with a width of 0 or running past address 65535 are skipped (config validation rejects them; never panic).
///
/// Tags wider than the area's limit are skipped too, since a tag is never
/// split. Requests come by area ([`Area::ALL`] order), then by address;
/// each starts at its first tag and ends at the last register any of its
/// tags reads. See the module doc for the rules and why greedy is optimal.
pub fn plan(tags: &[Tag], limits: Limits) -> Vec<Request> {
    plan_spans(&spans(tags, limits), limits)
}

/// [`plan`] of tags already turned into spans.
fn plan_spans(spans: &[Option<Span>], limits: Limits) -> Vec<Request> {
    let mut sorted: Vec<(Span, usize)> = spans
        .iter()
        .enumerate()
        .filter_map(|(i, span)| span.map(|s| (s, i)))
        .collect();
    // The tag index breaks ties so that the plan does not depend on the
    // sort's stability.
    sorted.sort_unstable();
    coalesce(&sorted, limits, limits.max_gap)
}

/// What a device answered that changes the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanChange {
    /// The request was replaced by smaller ones (indexes `at..at+count` in `requests()`).
    Split {
        /// Index of the first new request: the index of the one replaced.
        at: usize,
        /// How many requests replaced it (at least 2).
        count: usize,
    },
    /// A single-tag request failed: its tags are marked unsupported with the exception code and removed from polling until [`ReadPlan::reprobe`] puts them back.
    Unsupported {
        /// The tags of the removed request (one tag, or aliases of it).
        tags: Vec<usize>,
        /// The exception code the device answered.
        code: u8,
    },
    /// The exception is not one that splitting can cure (e.g. 04 device failure, 06 busy): nothing changed.
    Unchanged,
}

/// A device's live read plan, adapting to what the device says it does not support.
///
/// Built from the device's tags by [`ReadPlan::new`]; the indexes it hands
/// out are indexes into that same tag slice. What it learns from
/// exceptions stays until the poller builds a new one (on reload).
#[derive(Debug, Clone)]
pub struct ReadPlan {
    /// Where each tag lives, by tag index; `None` for skipped tags.
    /// Kept so that splits need not see the tags again.
    spans: Vec<Option<Span>>,
    /// The requests polled, in poll order.
    requests: Vec<Request>,
    /// Tags refused alone, with the code, in the order learned.
    unsupported: Vec<(usize, u8)>,
    /// The removed requests of those tags, waiting to be asked again.
    parked: Vec<Parked>,
    /// Tags the last [`ReadPlan::reprobe`] put back.
    reprobed: Vec<usize>,
    /// Tags that no request can serve, ascending.
    skipped: Vec<usize>,
    /// The limits the plan was built with, for coalescing split halves.
    limits: Limits,
}

impl ReadPlan {
    /// The plan of [`plan`], ready to adapt.
    pub fn new(tags: &[Tag], limits: Limits) -> ReadPlan {
        let spans = spans(tags, limits);
        let skipped = spans
            .iter()
            .enumerate()
            .filter(|(_, span)| span.is_none())
            .map(|(i, _)| i)
            .collect();
        ReadPlan {
            requests: plan_spans(&spans, limits),
            spans,
            unsupported: Vec::new(),
            parked: Vec::new(),
            reprobed: Vec::new(),
            skipped,
            limits,
        }
    }

    /// The requests to send each poll, in order.
    pub fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// Tags the device refused even alone, with the exception code it
    /// gave, and not put back by [`ReadPlan::reprobe`] since.
    pub fn unsupported(&self) -> &[(usize, u8)] {
        &self.unsupported
    }

    /// Tags no request serves because they cannot be read: width 0,
    /// running past address 65535, or wider than the area's limit.
    /// Ascending; fixed for the plan's life.
    pub fn skipped(&self) -> &[usize] {
        &self.skipped
    }

    /// The limits the plan was built with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Called when request `index` got Modbus exception `code`.
    ///
    /// Codes 1, 2 and 3 split the request in place (the new requests take
    /// indexes `index..index + count`, so the poller retries `index`) or,
    /// for a request of one tag or of aliases, remove it and mark its tags
    /// unsupported (the next request moves to `index`). Any other code, or
    /// an `index` out of range, changes nothing.
    pub fn on_exception(&mut self, index: usize, code: u8) -> PlanChange {
        if !matches!(code, 1..=3) {
            return PlanChange::Unchanged;
        }
        let Some(request) = self.requests.get(index) else {
            return PlanChange::Unchanged;
        };
        let pieces = self.split(request);
        if pieces.len() >= 2 {
            let count = pieces.len();
            self.requests.splice(index..=index, pieces);
            return PlanChange::Split { at: index, count };
        }
        let removed = self.requests.remove(index);
        self.unsupported
            .extend(removed.tags.iter().map(|&tag| (tag, code)));
        self.parked.push(Parked {
            request: removed.clone(),
            since: None,
        });
        PlanChange::Unsupported {
            tags: removed.tags,
            code,
        }
    }

    /// Puts back the requests that have been parked (refused with
    /// exception 01/02/03) for at least `every` at `now`, so that the next
    /// poll asks for them again; returns their tags (also kept in
    /// [`ReadPlan::reprobed`] until the next call). `now` is monotonic
    /// time; a parked request's clock starts at the first call after its
    /// removal.
    pub fn reprobe(&mut self, now: Instant, every: Duration) -> Vec<usize> {
        self.reprobed.clear();
        let mut k = 0;
        while k < self.parked.len() {
            let since = *self.parked[k].since.get_or_insert(now);
            if now.saturating_duration_since(since) < every {
                k += 1;
                continue;
            }
            let Parked { request, .. } = self.parked.remove(k);
            self.unsupported.retain(|(t, _)| !request.tags.contains(t));
            self.reprobed.extend(&request.tags);
            // Back where it was: the poll order stays by area and address.
            let key = (request.area, request.start);
            let at = self.requests.partition_point(|r| (r.area, r.start) <= key);
            self.requests.insert(at, request);
        }
        self.reprobed.clone()
    }

    /// Tags put back by the last [`ReadPlan::reprobe`] (being asked again).
    pub fn reprobed(&self) -> &[usize] {
        &self.reprobed
    }

    /// Total registers (or bits) read per poll: sum of counts.
    pub fn units_read(&self) -> u32 {
        self.requests.iter().map(|r| u32::from(r.count)).sum()
    }

    /// The smaller requests that replace `request`, or fewer than two when
    /// it reads a single tag range (then it cannot be split).
    fn split(&self, request: &Request) -> Vec<Request> {
        // Request tags are in (address, last) order already: they are a
        // contiguous piece of a sorted list, and splits keep that order.
        let entries: Vec<(Span, usize)> = request
            .tags
            .iter()
            .filter_map(|&i| self.spans.get(i).copied().flatten().map(|s| (s, i)))
            .collect();
        let Some(&(first, _)) = entries.first() else {
            return Vec::new();
        };
        // Slot boundaries: where the tag range changes. Aliases stay
        // together, since splitting them apart would read the same
        // registers twice and learn nothing.
        let slot_starts: Vec<usize> = (0..entries.len())
            .filter(|&k| k == 0 || entries[k].0 != entries[k - 1].0)
            .collect();
        if slot_starts.len() < 2 {
            return Vec::new();
        }
        let mut covered_to = first.last;
        let mut has_hole = false;
        for &(span, _) in &entries[1..] {
            if u32::from(span.start) > u32::from(covered_to) + 1 {
                has_hole = true;
            }
            covered_to = covered_to.max(span.last);
        }
        if has_hole {
            // With no gap allowed, coalescing yields exactly the gap-free
            // runs; the count limit cannot bind on a piece of a request.
            return coalesce(&entries, self.limits, 0);
        }
        let middle = slot_starts[slot_starts.len() / 2];
        let (left, right) = entries.split_at(middle);
        let mut pieces = coalesce(left, self.limits, self.limits.max_gap);
        pieces.extend(coalesce(right, self.limits, self.limits.max_gap));
        pieces
    }
}

/// A request removed after its tags were refused, waiting to be re-probed.
#[derive(Debug, Clone)]
struct Parked {
    /// The request, as it was polled.
    request: Request,
    /// When its re-probe clock started; `None` until the first
    /// [`ReadPlan::reprobe`] call after removal.
    since: Option<Instant>,
}

/// Where a tag lives. Field order gives the planning sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    /// The area read.
    area: Area,
    /// First register (or bit).
    start: u16,
    /// Last register (or bit), inclusive so that 65535 fits.
    last: u16,
}

/// Each tag's span, or `None` for a tag no request can serve.
fn spans(tags: &[Tag], limits: Limits) -> Vec<Option<Span>> {
    tags.iter()
        .map(|tag| {
            let width = tag.width();
            if width == 0 || width > limits.max_count(tag.area) {
                return None;
            }
            Some(Span {
                area: tag.area,
                start: tag.address,
                last: tag.last_address()?,
            })
        })
        .collect()
}

/// Greedy cut of `sorted` (by span, every span within its area's limit)
/// into requests, reading through holes of at most `max_gap`.
fn coalesce(sorted: &[(Span, usize)], limits: Limits, max_gap: u16) -> Vec<Request> {
    let mut requests = Vec::new();
    let mut open: Option<Open> = None;
    for &(span, tag) in sorted {
        match open.as_mut() {
            Some(current) if current.accepts(span, limits, max_gap) => current.push(span, tag),
            _ => {
                requests.extend(open.take().map(Open::finish));
                open = Some(Open::new(span, tag));
            }
        }
    }
    requests.extend(open.map(Open::finish));
    requests
}

/// A request being grown by [`coalesce`].
struct Open {
    /// Area of every tag in it.
    area: Area,
    /// First address: the first tag's, since tags come sorted.
    start: u16,
    /// Last address any of its tags reads.
    last: u16,
    /// Its tags, in sorted order.
    tags: Vec<usize>,
}

impl Open {
    /// A request for one tag.
    fn new(span: Span, tag: usize) -> Open {
        Open {
            area: span.area,
            start: span.start,
            last: span.last,
            tags: vec![tag],
        }
    }

    /// True when `span` (sorted after every tag already in) can join.
    fn accepts(&self, span: Span, limits: Limits, max_gap: u16) -> bool {
        // u32 arithmetic: a hole or count near address 65535 must not wrap.
        let hole_ok = u32::from(span.start) <= u32::from(self.last) + 1 + u32::from(max_gap);
        let last = self.last.max(span.last);
        let count = u32::from(last) - u32::from(self.start) + 1;
        span.area == self.area && hole_ok && count <= u32::from(limits.max_count(self.area))
    }

    /// Adds a tag that [`Open::accepts`].
    fn push(&mut self, span: Span, tag: usize) {
        self.last = self.last.max(span.last);
        self.tags.push(tag);
    }

    /// The finished request.
    fn finish(self) -> Request {
        let count = u32::from(self.last) - u32::from(self.start) + 1;
        Request {
            area: self.area,
            start: self.start,
            // Never saturates: `accepts` and `spans` keep the count within
            // the limit, at most 2000.
            count: u16::try_from(count).unwrap_or(u16::MAX),
            tags: self.tags,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::DataType;
    use Area::{Coil, DiscreteInput, HoldingRegister, InputRegister};

    fn tag(area: Area, address: u16, data_type: DataType) -> Tag {
        Tag::new(format!("t{address}"), area, address, data_type)
    }

    fn hr(address: u16, data_type: DataType) -> Tag {
        tag(HoldingRegister, address, data_type)
    }

    fn req(area: Area, start: u16, count: u16, tags: &[usize]) -> Request {
        Request {
            area,
            start,
            count,
            tags: tags.to_vec(),
        }
    }

    /// The poller loop, against a device that refuses every holding
    /// register request touching `bad` with `code`. Returns the number of
    /// `on_exception` calls.
    fn drive(plan: &mut ReadPlan, bad: &[u16], code: u8) -> usize {
        let mut calls = 0;
        let mut i = 0;
        while i < plan.requests().len() {
            let r = &plan.requests()[i];
            let end = u32::from(r.start) + u32::from(r.count);
            let refused = r.area == HoldingRegister
                && bad
                    .iter()
                    .any(|&a| u32::from(a) >= u32::from(r.start) && u32::from(a) < end);
            if !refused {
                i += 1;
                continue;
            }
            calls += 1;
            assert!(calls < 10_000, "the loop does not converge");
            match plan.on_exception(i, code) {
                PlanChange::Split { at, count } => {
                    assert_eq!(at, i);
                    assert!(count >= 2);
                }
                PlanChange::Unsupported { .. } => {}
                PlanChange::Unchanged => i += 1,
            }
        }
        calls
    }

    #[test]
    fn contiguous_tags_merge() {
        let tags = [
            hr(0, DataType::U16),
            hr(1, DataType::F32),
            hr(3, DataType::I16),
            hr(4, DataType::F64),
        ];
        assert_eq!(
            plan(&tags, Limits::default()),
            [req(HoldingRegister, 0, 8, &[0, 1, 2, 3])]
        );
    }

    #[test]
    fn unsorted_input_comes_out_in_address_order() {
        let tags = [
            hr(9, DataType::U16),
            hr(0, DataType::U16),
            hr(4, DataType::U32),
        ];
        assert_eq!(
            plan(&tags, Limits::default()),
            [req(HoldingRegister, 0, 10, &[1, 2, 0])]
        );
    }

    #[test]
    fn gap_of_max_gap_merges_and_one_more_does_not() {
        let limits = Limits::default();
        // 0..=1, hole 2..=11 (10 registers), 12.
        let tags = [hr(0, DataType::F32), hr(12, DataType::U16)];
        assert_eq!(plan(&tags, limits), [req(HoldingRegister, 0, 13, &[0, 1])]);
        let tags = [hr(0, DataType::F32), hr(13, DataType::U16)];
        assert_eq!(
            plan(&tags, limits),
            [
                req(HoldingRegister, 0, 2, &[0]),
                req(HoldingRegister, 13, 1, &[1])
            ]
        );
        let tight = Limits {
            max_gap: 0,
            ..limits
        };
        let tags = [
            hr(0, DataType::U16),
            hr(1, DataType::U16),
            hr(3, DataType::U16),
        ];
        assert_eq!(
            plan(&tags, tight),
            [
                req(HoldingRegister, 0, 2, &[0, 1]),
                req(HoldingRegister, 3, 1, &[2])
            ]
        );
    }

    #[test]
    fn at_most_125_registers_per_read() {
        let tags: Vec<Tag> = (0..130).map(|a| hr(a, DataType::U16)).collect();
        let got = plan(&tags, Limits::default());
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].start, got[0].count), (0, 125));
        assert_eq!((got[1].start, got[1].count), (125, 5));
        // A tag that would end at register 126 starts the next request
        // rather than being split.
        let mut tags: Vec<Tag> = (0..124).map(|a| hr(a, DataType::U16)).collect();
        tags.push(hr(124, DataType::F32));
        let got = plan(&tags, Limits::default());
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].start, got[0].count), (0, 124));
        assert_eq!(got[1], req(HoldingRegister, 124, 2, &[124]));
    }

    #[test]
    fn a_meter_capped_at_40() {
        let limits = Limits {
            max_registers: 40,
            ..Limits::default()
        };
        let tags: Vec<Tag> = (0..50).map(|k| hr(k * 2, DataType::F32)).collect();
        let got = plan(&tags, limits);
        assert_eq!(
            got.iter().map(|r| (r.start, r.count)).collect::<Vec<_>>(),
            [(0, 40), (40, 40), (80, 20)]
        );
        assert!(got.iter().all(|r| r.tags.len() == r.count as usize / 2));
    }

    #[test]
    fn limits_are_clamped_to_the_protocol() {
        let limits = Limits {
            max_registers: 500,
            max_bits: 0,
            max_gap: 10,
        };
        assert_eq!(limits.max_count(HoldingRegister), 125);
        assert_eq!(limits.max_count(InputRegister), 125);
        assert_eq!(limits.max_count(Coil), 1);
        let tags = [tag(Coil, 0, DataType::Bool), tag(Coil, 1, DataType::Bool)];
        assert_eq!(plan(&tags, limits).len(), 2);
    }

    #[test]
    fn coils_up_to_2000_bits() {
        let tags: Vec<Tag> = (0..2500).map(|a| tag(Coil, a, DataType::Bool)).collect();
        let got = plan(&tags, Limits::default());
        assert_eq!(
            got.iter().map(|r| (r.start, r.count)).collect::<Vec<_>>(),
            [(0, 2000), (2000, 500)]
        );
        assert_eq!(got[0].tags, (0..2000).collect::<Vec<_>>());
        // The gap counts bits in bit areas.
        let tags = [
            tag(DiscreteInput, 0, DataType::Bool),
            tag(DiscreteInput, 11, DataType::Bool),
            tag(DiscreteInput, 23, DataType::Bool),
        ];
        assert_eq!(
            plan(&tags, Limits::default()),
            [
                req(DiscreteInput, 0, 12, &[0, 1]),
                req(DiscreteInput, 23, 1, &[2])
            ]
        );
    }

    #[test]
    fn aliases_and_bits_of_one_register_share_a_request() {
        let mut alias = hr(10, DataType::U16);
        alias.alias = true;
        let tags = [
            hr(10, DataType::F32),
            hr(10, DataType::Bit(0)),
            hr(10, DataType::Bit(15)),
            alias,
            hr(11, DataType::Bit(3)),
            // Starts inside the f32 and runs past it.
            hr(11, DataType::U32),
        ];
        let got = plan(&tags, Limits::default());
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].start, got[0].count), (10, 3));
        let mut served = got[0].tags.clone();
        served.sort_unstable();
        assert_eq!(served, [0, 1, 2, 3, 4, 5]);
        // Address order: the three one-register tags at 10, then the f32,
        // then what starts at 11.
        assert_eq!(got[0].tags[3], 0);
    }

    #[test]
    fn a_long_tag_bridges_what_it_covers() {
        // The string covers 0..=19, so the u16 at 25 is 5 past its end.
        let limits = Limits {
            max_gap: 5,
            ..Limits::default()
        };
        let tags = [
            hr(0, DataType::String(20)),
            hr(1, DataType::U16),
            hr(25, DataType::U16),
        ];
        assert_eq!(
            plan(&tags, limits),
            [req(HoldingRegister, 0, 26, &[0, 1, 2])]
        );
    }

    #[test]
    fn the_top_of_the_map_and_unplannable_tags_never_panic() {
        let tags = [
            // Ends exactly on 65535: readable, and `address + width`
            // would overflow a u16.
            hr(65534, DataType::F32),
            hr(65535, DataType::U16),
            // These run past 65535.
            hr(65535, DataType::F32),
            hr(65533, DataType::F64),
            // Width 0, and wider than one read.
            hr(0, DataType::String(0)),
            hr(100, DataType::String(126)),
            hr(200, DataType::String(125)),
            tag(Coil, 65535, DataType::Bool),
        ];
        let got = plan(&tags, Limits::default());
        assert_eq!(
            got,
            [
                req(Coil, 65535, 1, &[7]),
                req(HoldingRegister, 200, 125, &[6]),
                req(HoldingRegister, 65534, 2, &[0, 1]),
            ]
        );
        let read_plan = ReadPlan::new(&tags, Limits::default());
        assert_eq!(read_plan.requests(), got);
        assert_eq!(read_plan.skipped(), [2, 3, 4, 5]);
        assert!(ReadPlan::new(&[], Limits::default()).requests().is_empty());
        // Holes are measured without wrapping at the top of the map.
        let tags = [hr(65530, DataType::U16), hr(65535, DataType::U16)];
        assert_eq!(plan(&tags, Limits::default()).len(), 1);
        let tags = [hr(0, DataType::U16), hr(65535, DataType::U16)];
        assert_eq!(plan(&tags, Limits::default()).len(), 2);
    }

    #[test]
    fn areas_never_mix() {
        let tags = [
            tag(HoldingRegister, 0, DataType::U16),
            tag(InputRegister, 1, DataType::U16),
            tag(Coil, 2, DataType::Bool),
            tag(DiscreteInput, 3, DataType::Bool),
            tag(HoldingRegister, 1, DataType::U16),
            tag(InputRegister, 0, DataType::U16),
        ];
        assert_eq!(
            plan(&tags, Limits::default()),
            [
                req(Coil, 2, 1, &[2]),
                req(DiscreteInput, 3, 1, &[3]),
                req(InputRegister, 0, 2, &[5, 1]),
                req(HoldingRegister, 0, 2, &[0, 4]),
            ]
        );
    }

    #[test]
    fn units_read_sums_counts() {
        let tags = [
            hr(0, DataType::F32),
            hr(12, DataType::U16),
            tag(Coil, 0, DataType::Bool),
        ];
        let plan = ReadPlan::new(&tags, Limits::default());
        assert_eq!(plan.units_read(), 13 + 1);
    }

    #[test]
    fn a_refused_hole_splits_into_gap_free_runs() {
        // 0..=4 and 8..=9 merged through the hole 5..=7.
        let tags: Vec<Tag> = [0, 1, 2, 3, 4, 8, 9]
            .into_iter()
            .map(|a| hr(a, DataType::U16))
            .collect();
        let mut plan = ReadPlan::new(&tags, Limits::default());
        assert_eq!(plan.requests().len(), 1);
        assert_eq!(
            plan.on_exception(0, 2),
            PlanChange::Split { at: 0, count: 2 }
        );
        assert_eq!(
            plan.requests(),
            [
                req(HoldingRegister, 0, 5, &[0, 1, 2, 3, 4]),
                req(HoldingRegister, 8, 2, &[5, 6])
            ]
        );
        // The device accepts both runs: nothing more to learn.
        assert_eq!(drive(&mut plan, &[5, 6, 7], 2), 0);
        assert!(plan.unsupported().is_empty());
        assert_eq!(plan.units_read(), 7);
    }

    #[test]
    fn only_the_truly_unsupported_tags_are_marked() {
        // Twenty u16 with holes, plus an f32 over register 31, which the
        // device lacks along with the holes 10..=14.
        let mut tags: Vec<Tag> = (0..10).map(|a| hr(a, DataType::U16)).collect();
        tags.extend((15..30).map(|a| hr(a, DataType::U16)));
        tags.push(hr(30, DataType::F32));
        tags.push(hr(32, DataType::U16));
        tags.push(tag(InputRegister, 31, DataType::U16));
        let bad = [10, 11, 12, 13, 14, 31];
        let mut plan = ReadPlan::new(&tags, Limits::default());
        drive(&mut plan, &bad, 2);
        let f32_tag = 25;
        assert_eq!(plan.unsupported(), [(f32_tag, 2)]);
        let mut served: Vec<usize> = plan
            .requests()
            .iter()
            .flat_map(|r| r.tags.iter().copied())
            .collect();
        served.sort_unstable();
        let expected: Vec<usize> = (0..tags.len()).filter(|&i| i != f32_tag).collect();
        assert_eq!(served, expected);
        // The input register 31 is another area and was never refused.
        assert!(plan.requests().contains(&req(InputRegister, 31, 1, &[27])));
        // A second poll goes through without exceptions.
        assert_eq!(drive(&mut plan, &bad, 2), 0);
    }

    #[test]
    fn aliases_fail_together() {
        let tags = [
            hr(5, DataType::U16),
            hr(5, DataType::Bit(0)),
            hr(5, DataType::Bit(1)),
        ];
        let mut plan = ReadPlan::new(&tags, Limits::default());
        assert_eq!(
            plan.on_exception(0, 2),
            PlanChange::Unsupported {
                tags: vec![0, 1, 2],
                code: 2
            }
        );
        assert!(plan.requests().is_empty());
        assert_eq!(plan.unsupported(), [(0, 2), (1, 2), (2, 2)]);
    }

    #[test]
    fn bisection_keeps_aliases_together_and_drops_bridged_holes() {
        let limits = Limits {
            max_gap: 2,
            ..Limits::default()
        };
        // The string bridges 1..=19; without it, 2..=18 is a hole wider
        // than max_gap, so the right half becomes two requests.
        let tags = [
            hr(0, DataType::String(20)),
            hr(1, DataType::U16),
            hr(1, DataType::Bit(4)),
            hr(19, DataType::U16),
        ];
        let mut plan = ReadPlan::new(&tags, limits);
        assert_eq!(plan.requests().len(), 1);
        assert_eq!(
            plan.on_exception(0, 3),
            PlanChange::Split { at: 0, count: 3 }
        );
        assert_eq!(
            plan.requests(),
            [
                req(HoldingRegister, 0, 20, &[0]),
                req(HoldingRegister, 1, 1, &[1, 2]),
                req(HoldingRegister, 19, 1, &[3]),
            ]
        );
    }

    #[test]
    fn splits_happen_in_place() {
        let tags = [
            tag(Coil, 0, DataType::Bool),
            hr(0, DataType::U16),
            hr(1, DataType::U16),
            hr(2, DataType::U16),
            tag(InputRegister, 0, DataType::U16),
        ];
        let mut plan = ReadPlan::new(&tags, Limits::default());
        assert_eq!(plan.requests().len(), 3);
        assert_eq!(
            plan.on_exception(2, 2),
            PlanChange::Split { at: 2, count: 2 }
        );
        assert_eq!(
            plan.requests(),
            [
                req(Coil, 0, 1, &[0]),
                req(InputRegister, 0, 1, &[4]),
                req(HoldingRegister, 0, 1, &[1]),
                req(HoldingRegister, 1, 2, &[2, 3]),
            ]
        );
        assert_eq!(
            plan.on_exception(2, 2),
            PlanChange::Unsupported {
                tags: vec![1],
                code: 2
            }
        );
        assert_eq!(plan.requests()[2], req(HoldingRegister, 1, 2, &[2, 3]));
    }

    #[test]
    fn other_codes_and_bad_indexes_change_nothing() {
        let tags = [hr(0, DataType::U16), hr(5, DataType::U16)];
        let mut plan = ReadPlan::new(&tags, Limits::default());
        let before = plan.requests().to_vec();
        for code in [0, 4, 5, 6, 8, 10, 11, 255] {
            assert_eq!(plan.on_exception(0, code), PlanChange::Unchanged);
        }
        assert_eq!(plan.on_exception(1, 2), PlanChange::Unchanged);
        assert_eq!(plan.on_exception(usize::MAX, 2), PlanChange::Unchanged);
        assert_eq!(plan.requests(), before);
        assert!(plan.unsupported().is_empty());
    }

    #[test]
    fn worst_case_exceptions_are_bounded() {
        // The device refuses everything: each tag ends up unsupported, and
        // bisection costs 2n - 1 exceptions per request of n tags.
        for n in [1u16, 2, 3, 7, 64, 100, 125, 300] {
            let tags: Vec<Tag> = (0..n).map(|a| hr(a, DataType::U16)).collect();
            let bad: Vec<u16> = (0..n).collect();
            let mut plan = ReadPlan::new(&tags, Limits::default());
            let requests = plan.requests().len();
            let calls = drive(&mut plan, &bad, 1);
            assert_eq!(calls, 2 * usize::from(n) - requests, "n = {n}");
            assert_eq!(plan.unsupported().len(), usize::from(n));
            assert!(plan.unsupported().iter().all(|&(_, code)| code == 1));
            assert!(plan.requests().is_empty());
        }
        // One bad register in a long run: about 2 log2(n) exceptions.
        let tags: Vec<Tag> = (0..125).map(|a| hr(a, DataType::U16)).collect();
        let mut plan = ReadPlan::new(&tags, Limits::default());
        let calls = drive(&mut plan, &[77], 2);
        assert!(calls <= 2 * 7 + 1, "{calls}");
        assert_eq!(plan.unsupported(), [(77, 2)]);
        // Holes everywhere: one exception removes them all.
        let tags: Vec<Tag> = (0..40).map(|k| hr(k * 3, DataType::U16)).collect();
        let bad: Vec<u16> = (0..40).flat_map(|k| [k * 3 + 1, k * 3 + 2]).collect();
        let mut plan = ReadPlan::new(&tags, Limits::default());
        assert_eq!(drive(&mut plan, &bad, 2), 1);
        assert_eq!(plan.requests().len(), 40);
        assert!(plan.unsupported().is_empty());
    }

    #[test]
    fn a_transient_refusal_is_reprobed() {
        let tags = [hr(0, DataType::U16), hr(7, DataType::F32)];
        let limits = Limits {
            max_gap: 0,
            ..Limits::default()
        };
        let mut plan = ReadPlan::new(&tags, limits);
        let original = plan.requests().to_vec();
        let every = Duration::from_secs(300);
        let t0 = Instant::now();
        assert!(matches!(
            plan.on_exception(0, 2),
            PlanChange::Unsupported { .. }
        ));
        assert_eq!(plan.unsupported(), [(0, 2)]);
        // The clock starts at the first call after the removal.
        assert!(plan.reprobe(t0, every).is_empty());
        assert!(
            plan.reprobe(t0 + every - Duration::from_millis(1), every)
                .is_empty()
        );
        assert_eq!(plan.requests(), [req(HoldingRegister, 7, 2, &[1])]);
        assert_eq!(plan.reprobe(t0 + every, every), [0]);
        assert_eq!(plan.reprobed(), [0]);
        assert_eq!(plan.requests(), original);
        assert!(plan.unsupported().is_empty());
        // Still refused: parked again, on a fresh clock.
        let t1 = t0 + every + Duration::from_secs(1);
        assert!(matches!(
            plan.on_exception(0, 3),
            PlanChange::Unsupported { .. }
        ));
        assert_eq!(plan.unsupported(), [(0, 3)]);
        assert!(plan.reprobe(t1, every).is_empty());
        assert!(plan.reprobed().is_empty());
        assert!(plan.reprobe(t1 + every / 2, every).is_empty());
        assert_eq!(plan.reprobe(t1 + every, every), [0]);
        // Answered this time: nothing more to re-probe, ever.
        assert!(plan.reprobe(t1 + every * 10, every).is_empty());
        assert_eq!(plan.requests(), original);
    }

    #[test]
    fn a_reprobed_request_goes_back_in_address_order() {
        let tags = [
            tag(Coil, 0, DataType::Bool),
            hr(0, DataType::U16),
            hr(1, DataType::U16),
            hr(2, DataType::U16),
            tag(InputRegister, 0, DataType::U16),
        ];
        let mut plan = ReadPlan::new(&tags, Limits::default());
        assert_eq!(
            plan.on_exception(2, 2),
            PlanChange::Split { at: 2, count: 2 }
        );
        assert!(matches!(
            plan.on_exception(2, 2),
            PlanChange::Unsupported { .. }
        ));
        let t0 = Instant::now();
        let every = Duration::from_secs(1);
        plan.reprobe(t0, every);
        assert_eq!(plan.reprobe(t0 + every, every), [1]);
        assert_eq!(
            plan.requests(),
            [
                req(Coil, 0, 1, &[0]),
                req(InputRegister, 0, 1, &[4]),
                req(HoldingRegister, 0, 1, &[1]),
                req(HoldingRegister, 1, 2, &[2, 3]),
            ]
        );
    }

    #[test]
    fn busy_and_failure_codes_never_park_anything() {
        let tags = [hr(0, DataType::U16)];
        let mut plan = ReadPlan::new(&tags, Limits::default());
        let before = plan.requests().to_vec();
        let t0 = Instant::now();
        for code in [4, 5, 6] {
            assert_eq!(plan.on_exception(0, code), PlanChange::Unchanged);
            assert!(plan.reprobe(t0, Duration::ZERO).is_empty());
        }
        assert!(
            plan.reprobe(t0 + Duration::from_secs(3600), Duration::from_secs(1))
                .is_empty()
        );
        assert_eq!(plan.requests(), before);
        assert!(plan.unsupported().is_empty());
    }
}
