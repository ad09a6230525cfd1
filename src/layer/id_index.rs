//! The span store's map from span id to slot: open addressing with linear probing, made for
//! the one key type it holds.
//!
//! A general hash map pays for what this map never needs (a hasher object, tombstones, a
//! generic entry API); the span store looks a span up on every event inside it, every exit and
//! every close. Here a lookup is a multiply, a shift and, nearly always, one compare: span ids
//! are never 0 (`tracing`'s `Id` is non-zero), so 0 marks a free cell; the table is at most half
//! full, so probe runs stay short; a removal shifts the rest of its run back (no tombstones), so
//! lookups never walk over removed entries however long the store lives.

/// Spreads ids over the table (Fibonacci hashing: the top bits of the product). A different
/// multiplier from the one that picks the store's shard, whose bits are the same for every id of
/// one shard.
const SPREAD: u64 = 0xd6e8_feb8_6659_fd93;

/// The smallest table made.
const MIN_CELLS: usize = 16;

/// Span id (non-zero) to slot number.
#[derive(Debug, Default)]
pub(super) struct IdIndex {
    /// `(id, slot)` cells, `id == 0` for a free one; a power of two long, or empty.
    cells: Vec<(u64, u32)>,
    /// `64 - log2(cells.len())`: the shift that takes a product's top bits as a cell index.
    shift: u32,
    len: usize,
}

impl IdIndex {
    /// Entries held.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Cells held (for tests of the store's memory).
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.cells.len()
    }

    #[inline]
    fn home(&self, id: u64) -> usize {
        (id.wrapping_mul(SPREAD) >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.cells.len().wrapping_sub(1)
    }

    /// The cell holding `id` (`Ok`), or the free cell that ends its run (`Err`), where it would
    /// go. The table must have cells.
    #[inline]
    fn probe(&self, id: u64) -> Result<usize, usize> {
        debug_assert_ne!(id, 0, "span ids are non-zero");
        let mask = self.mask();
        let mut i = self.home(id);
        loop {
            match self.cells[i].0 {
                key if key == id => return Ok(i),
                0 => return Err(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The slot of `id`.
    #[inline]
    pub(super) fn get(&self, id: u64) -> Option<u32> {
        if self.cells.is_empty() {
            return None;
        }
        self.probe(id).ok().map(|i| self.cells[i].1)
    }

    /// The slot of `id` (`Ok`), or, when `id` is not held, `make()`'s slot, now held (`Err`).
    #[inline]
    pub(super) fn get_or_insert(
        &mut self,
        id: u64,
        make: impl FnOnce() -> u32,
    ) -> Result<u32, u32> {
        if (self.len + 1) * 2 > self.cells.len() {
            self.grow();
        }
        match self.probe(id) {
            Ok(i) => Ok(self.cells[i].1),
            Err(i) => {
                let slot = make();
                self.cells[i] = (id, slot);
                self.len += 1;
                Err(slot)
            }
        }
    }

    /// Removes `id`; returns its slot.
    #[inline]
    pub(super) fn remove(&mut self, id: u64) -> Option<u32> {
        if self.cells.is_empty() {
            return None;
        }
        let i = self.probe(id).ok()?;
        let slot = self.cells[i].1;
        let mask = self.mask();
        // Backward shift: each later entry of the run whose home is not between the hole and
        // itself moves into the hole, so every entry stays reachable from its home.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let (key, _) = self.cells[j];
            if key == 0 {
                break;
            }
            let home = self.home(key);
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.cells[hole] = self.cells[j];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.cells[hole] = (0, 0);
        self.len -= 1;
        Some(slot)
    }

    /// Every entry's slot, to renumber (the store's compaction).
    pub(super) fn slots_mut(&mut self) -> impl Iterator<Item = &mut u32> {
        self.cells
            .iter_mut()
            .filter(|(key, _)| *key != 0)
            .map(|(_, slot)| slot)
    }

    /// Makes the table the smallest that holds `n` entries at most half full (never smaller
    /// than what it holds needs).
    pub(super) fn shrink_to(&mut self, n: usize) {
        let cells = (n.max(self.len) * 2).next_power_of_two().max(MIN_CELLS);
        if cells < self.cells.len() {
            self.rebuild(cells);
        }
    }

    #[cold]
    fn grow(&mut self) {
        let cells = (self.cells.len() * 2).max(MIN_CELLS);
        self.rebuild(cells);
    }

    fn rebuild(&mut self, cells: usize) {
        let old = std::mem::replace(&mut self.cells, vec![(0, 0); cells]);
        self.shift = 64 - cells.trailing_zeros();
        let mask = cells - 1;
        for (key, slot) in old.into_iter().filter(|(key, _)| *key != 0) {
            let mut i = self.home(key);
            while self.cells[i].0 != 0 {
                i = (i + 1) & mask;
            }
            self.cells[i] = (key, slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A small deterministic generator (xorshift), so that a failure repeats.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn agrees_with_a_hash_map_under_random_inserts_and_removals() {
        for (keys, seed) in [(8u64, 1u64), (64, 2), (5_000, 3), (u64::MAX, 4)] {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
            let mut index = IdIndex::default();
            let mut model: HashMap<u64, u32> = HashMap::new();
            for step in 0..200_000u32 {
                // Keys from a small range collide and reuse; from the whole range they spread.
                let id = rng.next() % keys.min(u64::MAX - 1) + 1;
                match rng.next() % 8 {
                    0..=3 => {
                        let got = index.get_or_insert(id, || step);
                        match model.get(&id) {
                            Some(&slot) => assert_eq!(got, Ok(slot), "id {id}"),
                            None => {
                                assert_eq!(got, Err(step), "id {id}");
                                model.insert(id, step);
                            }
                        }
                    }
                    4..=6 => assert_eq!(index.remove(id), model.remove(&id), "id {id}"),
                    _ => assert_eq!(index.get(id), model.get(&id).copied(), "id {id}"),
                }
                assert_eq!(index.len(), model.len());
                if step % 50_000 == 0 {
                    index.shrink_to(0);
                }
            }
            for (&id, &slot) in &model {
                assert_eq!(index.get(id), Some(slot));
            }
            let mut slots: Vec<u32> = index.slots_mut().map(|s| *s).collect();
            let mut expected: Vec<u32> = model.values().copied().collect();
            slots.sort_unstable();
            expected.sort_unstable();
            assert_eq!(slots, expected);
        }
    }

    #[test]
    fn consecutive_ids_from_a_full_table_leave_it_empty_and_small() {
        let mut index = IdIndex::default();
        let n = 100_000u64;
        for id in 1..=n {
            assert_eq!(index.get_or_insert(id, || id as u32), Err(id as u32));
        }
        assert!(index.capacity() <= 4 * n as usize);
        for id in (1..=n).rev() {
            assert_eq!(index.remove(id), Some(id as u32));
            assert_eq!(index.get(id), None);
        }
        assert_eq!(index.len(), 0);
        index.shrink_to(0);
        assert_eq!(index.capacity(), MIN_CELLS);
        assert_eq!(index.get(1), None);
        assert_eq!(index.remove(1), None);
    }
}
