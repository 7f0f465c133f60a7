//! An append-only sequence kept in pages of `N` elements, for the
//! directories and rollups a chunk gathers until it is sealed (hundreds of
//! thousands of entries, tens of MB) and a shard's tag buffers (100,000
//! tags arriving at once): a `Vec` of that size grows by
//! reallocating and copying everything it holds in one step, which stalled
//! a shard for 20–85 ms (seen by `xtdb serve --stall-report-ms`). Growing
//! here allocates one more piece and copies nothing. Pure data structure:
//! owns its elements, no I/O, never reorders what was appended.

/// Elements of `T` in order, stored in pieces of `N` (every piece but the
/// last is full, so element `i` is at piece `i / N`, offset `i % N`).
#[derive(Clone, Debug, PartialEq)]
pub struct Paged<T, const N: usize> {
    pieces: Vec<Vec<T>>,
    len: usize,
}

impl<T, const N: usize> Default for Paged<T, N> {
    fn default() -> Self {
        Paged {
            pieces: Vec::new(),
            len: 0,
        }
    }
}

impl<T, const N: usize> Paged<T, N> {
    /// Elements held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The last piece, with room for one more element.
    fn tail(&mut self) -> &mut Vec<T> {
        if self.pieces.last().is_none_or(|p| p.len() == N) {
            self.pieces.push(Vec::with_capacity(N));
        }
        let last = self.pieces.len() - 1;
        &mut self.pieces[last]
    }

    /// Appends `x`.
    pub fn push(&mut self, x: T) {
        self.tail().push(x);
        self.len += 1;
    }

    /// The pages in order (every one but the last holds `N` elements).
    pub fn pages(&self) -> impl Iterator<Item = &[T]> {
        self.pieces.iter().map(Vec::as_slice)
    }

    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.pieces.iter().flatten()
    }

    /// The elements in order, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.pieces.iter_mut().flatten()
    }

    /// Drops every element (and the pieces).
    pub fn clear(&mut self) {
        self.pieces.clear();
        self.len = 0;
    }
}

impl<T, const N: usize> std::ops::Index<usize> for Paged<T, N> {
    type Output = T;

    #[inline(always)]
    fn index(&self, i: usize) -> &T {
        &self.pieces[i / N][i % N]
    }
}

impl<T, const N: usize> std::ops::IndexMut<usize> for Paged<T, N> {
    #[inline(always)]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.pieces[i / N][i % N]
    }
}

impl<T: Clone, const N: usize> Paged<T, N> {
    /// Appends clones of `xs`, filling the last piece first.
    pub fn extend_from_slice(&mut self, mut xs: &[T]) {
        while !xs.is_empty() {
            let tail = self.tail();
            let k = (N - tail.len()).min(xs.len());
            tail.extend_from_slice(&xs[..k]);
            self.len += k;
            xs = &xs[k..];
        }
    }

    /// The elements as one vector (tests, small sequences).
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().cloned().collect()
    }
}

impl<T: Clone, const N: usize> From<&[T]> for Paged<T, N> {
    fn from(xs: &[T]) -> Self {
        let mut p = Paged::default();
        p.extend_from_slice(xs);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::proptest_config::config(256))]

        /// Any mix of pushes and slice appends holds what a `Vec` would,
        /// in pieces of exactly `N` but the last.
        #[test]
        fn pages_hold_what_a_vec_would(
            ops in prop::collection::vec(prop::collection::vec(any::<u16>(), 0..12), 0..40),
        ) {
            let mut p: Paged<u16, 5> = Paged::default();
            let mut v = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                if i % 3 == 0 {
                    for &x in op {
                        p.push(x);
                    }
                } else {
                    p.extend_from_slice(op);
                }
                v.extend_from_slice(op);
                prop_assert_eq!(p.len(), v.len());
            }
            prop_assert_eq!(p.to_vec(), v.clone());
            for (i, x) in v.iter().enumerate() {
                prop_assert_eq!(p[i], *x);
            }
            let lens: Vec<usize> = p.pages().map(<[u16]>::len).collect();
            prop_assert!(lens.iter().rev().skip(1).all(|&l| l == 5));
            prop_assert!(lens.iter().all(|&l| l > 0));
            for x in p.iter_mut() {
                *x = x.wrapping_add(1);
            }
            let bumped: Vec<u16> = v.iter().map(|x| x.wrapping_add(1)).collect();
            prop_assert_eq!(p.to_vec(), bumped);
            prop_assert_eq!(Paged::<u16, 5>::from(v.as_slice()).len(), v.len());
            p.clear();
            prop_assert!(p.is_empty() && p.pages().next().is_none());
        }
    }
}
