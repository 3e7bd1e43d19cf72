//! The register image of one device: what each of the four areas holds.
//!
//! Memory is proportional to what is served: each area is a sorted list of
//! contiguous segments (adjacent served ranges are merged when the image is
//! built), not 65536 slots. A read is a binary search plus one slice copy,
//! so 125 registers cost about as much as one. Any request that touches an
//! address outside every segment fails with [`OutOfRange`], which the
//! server answers with exception 02 (illegal data address).
//!
//! Pure: no locks, no I/O. The simulator wraps each device's image in a
//! lock.

use std::ops::Range;

use crate::tag::Area;

/// A request touched an address the device does not serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange;

/// Contiguous served ranges of one area.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Segments<T> {
    /// Sorted by `start`, never overlapping or touching.
    segs: Vec<Segment<T>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Segment<T> {
    start: u16,
    data: Vec<T>,
}

impl<T> Segment<T> {
    /// One past the last address, as u32 so that a segment can end at 65535.
    fn end(&self) -> u32 {
        u32::from(self.start) + self.data.len() as u32
    }
}

impl<T: Copy> Segments<T> {
    /// Serves the union of `ranges` (end exclusive), all set to `fill`.
    pub fn new(mut ranges: Vec<Range<u32>>, fill: T) -> Segments<T> {
        ranges.retain(|r| r.start < r.end && r.start <= u32::from(u16::MAX));
        ranges.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u32>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            let end = r.end.min(1 << 16);
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(end),
                _ => merged.push(r.start..end),
            }
        }
        let segs = merged
            .into_iter()
            .map(|r| Segment {
                // ok: `retain` above keeps only starts within u16.
                start: r.start as u16,
                data: vec![fill; (r.end - r.start) as usize],
            })
            .collect();
        Segments { segs }
    }

    /// Index of the segment containing `addr`.
    fn find(&self, addr: u16) -> Option<usize> {
        let i = self.segs.partition_point(|s| s.start <= addr);
        let i = i.checked_sub(1)?;
        (u32::from(addr) < self.segs[i].end()).then_some(i)
    }

    fn locate(&self, addr: u16, count: usize) -> Result<(usize, Range<usize>), OutOfRange> {
        let i = self.find(addr).ok_or(OutOfRange)?;
        let off = usize::from(addr - self.segs[i].start);
        let end = off.checked_add(count).ok_or(OutOfRange)?;
        if count == 0 || end > self.segs[i].data.len() {
            return Err(OutOfRange);
        }
        Ok((i, off..end))
    }

    /// The `count` values from `addr`, if every one is served.
    pub fn get(&self, addr: u16, count: usize) -> Result<&[T], OutOfRange> {
        let (i, r) = self.locate(addr, count)?;
        Ok(&self.segs[i].data[r])
    }

    /// Mutable access to `count` values from `addr`, if every one is served.
    pub fn get_mut(&mut self, addr: u16, count: usize) -> Result<&mut [T], OutOfRange> {
        let (i, r) = self.locate(addr, count)?;
        Ok(&mut self.segs[i].data[r])
    }

    /// Calls `f(address, &mut value)` for every served address in `range`.
    pub fn for_each_in(&mut self, range: Range<u32>, mut f: impl FnMut(u16, &mut T)) {
        for seg in &mut self.segs {
            let start = u32::from(seg.start);
            if seg.end() <= range.start || start >= range.end {
                continue;
            }
            let from = range.start.max(start);
            let to = range.end.min(seg.end());
            for addr in from..to {
                // ok: `addr` < seg.end() <= 65536.
                f(addr as u16, &mut seg.data[(addr - start) as usize]);
            }
        }
    }
}

/// The four areas of one device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image {
    /// Coils (FC 1 read, FC 5/15 write).
    pub coils: Segments<bool>,
    /// Discrete inputs (FC 2).
    pub discrete: Segments<bool>,
    /// Input registers (FC 4).
    pub input: Segments<u16>,
    /// Holding registers (FC 3 read, FC 6/16 write).
    pub holding: Segments<u16>,
}

impl Image {
    /// Serves the given ranges (end exclusive) of each area, all zero.
    pub fn new(ranges: [Vec<Range<u32>>; 4]) -> Image {
        let [coils, discrete, input, holding] = ranges;
        Image {
            coils: Segments::new(coils, false),
            discrete: Segments::new(discrete, false),
            input: Segments::new(input, 0),
            holding: Segments::new(holding, 0),
        }
    }

    /// The bit area for `area`, or `None` for a register area.
    pub fn bits(&self, area: Area) -> Option<&Segments<bool>> {
        match area {
            Area::Coil => Some(&self.coils),
            Area::DiscreteInput => Some(&self.discrete),
            _ => None,
        }
    }

    /// Mutable bit area for `area`.
    pub fn bits_mut(&mut self, area: Area) -> Option<&mut Segments<bool>> {
        match area {
            Area::Coil => Some(&mut self.coils),
            Area::DiscreteInput => Some(&mut self.discrete),
            _ => None,
        }
    }

    /// The register area for `area`, or `None` for a bit area.
    pub fn registers(&self, area: Area) -> Option<&Segments<u16>> {
        match area {
            Area::InputRegister => Some(&self.input),
            Area::HoldingRegister => Some(&self.holding),
            _ => None,
        }
    }

    /// Mutable register area for `area`.
    pub fn registers_mut(&mut self, area: Area) -> Option<&mut Segments<u16>> {
        match area {
            Area::InputRegister => Some(&mut self.input),
            Area::HoldingRegister => Some(&mut self.holding),
            _ => None,
        }
    }
}

/// `ranges` minus `holes` (all end exclusive).
pub fn subtract(ranges: Vec<Range<u32>>, holes: &[Range<u32>]) -> Vec<Range<u32>> {
    let mut out = ranges;
    for hole in holes {
        out = out
            .into_iter()
            .flat_map(|r| {
                let left = r.start..r.end.min(hole.start);
                let right = r.start.max(hole.end)..r.end;
                [left, right]
            })
            .filter(|r| r.start < r.end)
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_adjacent_and_overlapping_ranges() {
        let s = Segments::new(vec![10..12, 0..4, 4..6, 11..20], 0u16);
        assert_eq!(s.segs.len(), 2);
        assert_eq!(s.segs.iter().map(|s| s.data.len()).sum::<usize>(), 6 + 10);
        assert!(s.get(0, 6).is_ok());
        assert_eq!(s.get(5, 2), Err(OutOfRange));
        assert_eq!(s.get(6, 1), Err(OutOfRange));
        assert!(s.get(10, 10).is_ok());
        assert_eq!(s.get(10, 11), Err(OutOfRange));
        assert_eq!(s.get(0, 0), Err(OutOfRange));
    }

    #[test]
    fn reads_and_writes_at_the_top_of_the_address_space() {
        let top = 65530..65536;
        let mut s = Segments::new(vec![top], 0u16);
        s.get_mut(65534, 2).map(|w| w.copy_from_slice(&[1, 2])).ok();
        assert_eq!(s.get(65530, 6), Ok(&[0, 0, 0, 0, 1, 2][..]));
        assert_eq!(s.get(65535, 2), Err(OutOfRange));
    }

    #[test]
    fn for_each_visits_only_served_addresses() {
        let mut s = Segments::new(vec![0..3, 5..7], 0u16);
        let mut seen = Vec::new();
        s.for_each_in(1..6, |a, v| {
            *v = a;
            seen.push(a);
        });
        assert_eq!(seen, [1, 2, 5]);
        assert_eq!(s.get(5, 1), Ok(&[5][..]));
    }

    #[test]
    fn holes_are_cut_out() {
        let (all, ten, hole) = (0..100, 0..10, 10..20);
        assert_eq!(
            subtract(vec![all.clone()], &[hole.clone(), 50..51]),
            [0..10, 20..50, 51..100]
        );
        assert_eq!(
            subtract(vec![ten.clone()], &[ten]),
            Vec::<Range<u32>>::new()
        );
        let img = Image::new([vec![], vec![], vec![], subtract(vec![all], &[hole])]);
        assert_eq!(img.holding.get(5, 10), Err(OutOfRange));
        assert!(img.holding.get(20, 80).is_ok());
    }
}
