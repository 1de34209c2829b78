//! A small deterministic generator (xorshift64) for the tests that walk random inputs.

/// Each step's state is the next number.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    /// The next number.
    pub(crate) fn step(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next number, below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.step() % n
    }
}
