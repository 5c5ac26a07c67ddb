//! A small seeded pseudo-random generator (SplitMix64) for the scenarios' choices: fast,
//! reproducible with --seed, and no dependency for something that needs no security.

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high.saturating_sub(low) + 1)
    }

    /// One element of `items`, if any.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// `count` distinct indexes below `n` (fewer if n is smaller).
    pub fn distinct(&mut self, n: usize, count: usize) -> Vec<usize> {
        let mut chosen: Vec<usize> = Vec::with_capacity(count.min(n));
        while chosen.len() < count.min(n) {
            let i = self.below(n);
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_distinct() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            assert!(rng.below(7) < 7);
            let v = rng.between(3, 5);
            assert!((3..=5).contains(&v));
        }
        let mut d = rng.distinct(5, 5);
        d.sort();
        assert_eq!(d, vec![0, 1, 2, 3, 4]);
        assert_eq!(rng.distinct(2, 9).len(), 2);
        assert_eq!(rng.pick::<u8>(&[]), None);
    }
}
