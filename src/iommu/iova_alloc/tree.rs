//! The free-hole index: an AVL tree of the free ranges ("holes"), keyed by
//! start, in granule units.
//!
//! Each node is augmented, for every alignment class `i` (alignment `2^i`
//! granules) up to `k`, with the longest allocation aligned to `2^i` that
//! one hole of its subtree can hold:
//! `agg[i] = max over holes h of (h.end - align_up(h.start, 2^i))`.
//! With it a search never enters a subtree that cannot serve the request,
//! so finding the highest fitting place below a limit is one walk down and
//! at most one walk back up and down again: O(log n) in the number of holes
//! (at most live ranges + 1), for any size, alignment and limit. Alignments
//! of `2^k` granules or more (`2^k` ≥ the aperture) have at most one
//! aligned place in the whole aperture, which is checked directly.
//!
//! Changing one hole re-derives the aggregates of its ancestors: O(k log n)
//! word operations, vectorised (k ≤ 64; 36 for a 48-bit aperture of 4 KiB
//! granules). Nodes live in an arena (`Vec`) with a free list, so the tree
//! is plain safe code and costs one node up front, whatever the aperture.

use alloc::vec::Vec;

/// The sentinel node: height 0, all aggregates 0, never a hole.
const NIL: usize = 0;
/// Most alignment classes: one per bit of a `u64` granule count.
const MAX_K: usize = 64;
/// Deeper than any AVL tree that fits in memory (height < 1.45 log2(n + 2)).
const MAX_DEPTH: usize = 96;

#[derive(Clone, Copy)]
struct Node {
    start: u64,
    end: u64,
    left: usize,
    right: usize,
    height: u32,
}

const EMPTY: Node = Node {
    start: 0,
    end: 0,
    left: NIL,
    right: NIL,
    height: 0,
};

/// `2^i - 1`.
#[inline(always)]
const fn mask(i: u32) -> u64 {
    (1u64 << i) - 1
}

/// The longest run aligned to `2^i` inside `[start, end)`.
#[inline(always)]
const fn fit(start: u64, end: u64, i: u32) -> u64 {
    // `start.wrapping_neg() & mask` is `align_up(start) - start`.
    (end - start).saturating_sub(start.wrapping_neg() & mask(i))
}

/// The free holes of one aperture `[lo, hi)` (granule numbers).
pub(super) struct HoleTree {
    nodes: Vec<Node>,
    /// `k` aggregates per node, node-major (row `NIL` stays zero).
    aggs: Vec<u64>,
    /// Alignment classes with aggregates: `2^k >= hi - lo`.
    k: usize,
    root: usize,
    /// Recycled node slots, chained through `left`.
    free_head: usize,
    lo: u64,
    hi: u64,
}

impl HoleTree {
    /// One hole, the whole aperture `[lo, hi)`, `lo < hi`.
    pub(super) fn new(lo: u64, hi: u64) -> Self {
        let span = hi - lo;
        // ceil(log2(span)), as a class count.
        let k = (u64::BITS - (span - 1).leading_zeros()) as usize;
        let mut t = Self {
            nodes: Vec::new(),
            aggs: Vec::new(),
            k,
            root: NIL,
            free_head: NIL,
            lo,
            hi,
        };
        t.nodes.push(EMPTY);
        t.aggs.resize(k, 0);
        let n = t.new_node(lo, hi);
        t.root = n;
        t
    }

    /// Number of holes.
    #[cfg(test)]
    pub(super) fn holes(&self) -> usize {
        let mut count = 0;
        self.for_each(self.root, &mut |_, _| count += 1);
        count
    }

    /// The highest place for `n` granules aligned to `2^class` granules,
    /// ending at most at `lim_end`: the hole that holds it and its start.
    /// `n >= 1`; `None` only if no hole can hold it.
    pub(super) fn find(&self, n: u64, class: u32, lim_end: u64) -> Option<(usize, u64)> {
        let lim_end = lim_end.min(self.hi);
        if (class as usize) >= self.k {
            return self.find_single(n, class, lim_end);
        }
        let m = mask(class);
        let h = self.floor(lim_end.checked_sub(1)?)?;
        let hole = self.nodes[h];
        let bound = if hole.end > lim_end {
            // The hole straddles the limit: its part below the limit first.
            if let Some(top) = lim_end.checked_sub(n) {
                let pos = top & !m;
                if pos >= hole.start {
                    return Some((h, pos));
                }
            }
            hole.start
        } else {
            lim_end
        };
        let r = self.rightmost_fit(bound, n, class)?;
        Some((r, (self.nodes[r].end - n) & !m))
    }

    /// Alignment of `2^class >= hi - lo` granules: at most one aligned
    /// place in the aperture.
    fn find_single(&self, n: u64, class: u32, lim_end: u64) -> Option<(usize, u64)> {
        let m = mask(class);
        let p = self.lo.checked_add(m)? & !m;
        if p.checked_add(n)? > lim_end {
            return None;
        }
        let h = self.floor(p)?;
        (self.nodes[h].end >= p + n).then_some((h, p))
    }

    /// Takes `[pos, pos + n)` out of hole `h` (a place `find` returned).
    pub(super) fn carve(&mut self, h: usize, pos: u64, n: u64) {
        let Node { start, end, .. } = self.nodes[h];
        debug_assert!(start <= pos && pos + n <= end, "carve outside the hole");
        let tail = pos + n;
        match (pos == start, tail == end) {
            (true, true) => self.root = self.delete_at(self.root, start),
            (true, false) => {
                // The start moves up inside the hole: the order holds.
                self.nodes[h].start = tail;
                self.touch(tail);
            }
            (false, true) => {
                self.nodes[h].end = pos;
                self.touch(start);
            }
            (false, false) => {
                self.nodes[h].end = pos;
                self.touch(start);
                self.insert(tail, end);
            }
        }
    }

    /// Gives `[x, x + n)` (inside the aperture) back, merging it with the
    /// holes it touches. `Err` (and nothing changed) if any of it is free.
    pub(super) fn release(&mut self, x: u64, n: u64) -> Result<(), ()> {
        let end = x + n;
        let p = self.floor(x);
        if let Some(p) = p {
            if self.nodes[p].end > x {
                return Err(());
            }
        }
        let q = self.succ(x);
        if let Some(q) = q {
            if self.nodes[q].start < end {
                return Err(());
            }
        }
        let p = p.filter(|&p| self.nodes[p].end == x);
        let q = q.filter(|&q| self.nodes[q].start == end);
        match (p, q) {
            (Some(p), Some(q)) => {
                let Node { start, end, .. } = self.nodes[q];
                self.root = self.delete_at(self.root, start);
                // `p` precedes `q`, so deleting `q` moved no other node.
                self.nodes[p].end = end;
                self.touch(self.nodes[p].start);
            }
            (Some(p), None) => {
                self.nodes[p].end = end;
                self.touch(self.nodes[p].start);
            }
            (None, Some(q)) => {
                self.nodes[q].start = x;
                self.touch(x);
            }
            (None, None) => self.insert(x, end),
        }
        Ok(())
    }

    // --- searches ---

    /// The hole with the greatest start `<= v`.
    fn floor(&self, v: u64) -> Option<usize> {
        let (mut x, mut best) = (self.root, NIL);
        while x != NIL {
            if self.nodes[x].start <= v {
                best = x;
                x = self.nodes[x].right;
            } else {
                x = self.nodes[x].left;
            }
        }
        (best != NIL).then_some(best)
    }

    /// The hole with the least start `> v`.
    fn succ(&self, v: u64) -> Option<usize> {
        let (mut x, mut best) = (self.root, NIL);
        while x != NIL {
            if self.nodes[x].start > v {
                best = x;
                x = self.nodes[x].left;
            } else {
                x = self.nodes[x].right;
            }
        }
        (best != NIL).then_some(best)
    }

    #[inline(always)]
    fn agg(&self, x: usize, class: u32) -> u64 {
        self.aggs[x * self.k + class as usize]
    }

    #[inline(always)]
    fn own_fit(&self, x: usize, class: u32) -> u64 {
        let Node { start, end, .. } = self.nodes[x];
        fit(start, end, class)
    }

    /// The highest hole with start `< bound` that holds `n` granules
    /// aligned to `2^class`.
    ///
    /// The walk towards `bound` splits the qualifying holes into the nodes
    /// where it turned right and their left subtrees; taken back from the
    /// deepest, they come in descending order, and the aggregate says at
    /// once whether a left subtree holds a fit (then one descent finds it).
    fn rightmost_fit(&self, bound: u64, n: u64, class: u32) -> Option<usize> {
        let mut path = [NIL; MAX_DEPTH];
        let mut depth = 0;
        let mut x = self.root;
        while x != NIL {
            if self.nodes[x].start >= bound {
                x = self.nodes[x].left;
            } else {
                path[depth] = x;
                depth += 1;
                x = self.nodes[x].right;
            }
        }
        while depth > 0 {
            depth -= 1;
            let y = path[depth];
            if self.own_fit(y, class) >= n {
                return Some(y);
            }
            let l = self.nodes[y].left;
            if self.agg(l, class) >= n {
                return Some(self.descend_rightmost(l, n, class));
            }
        }
        None
    }

    /// The highest fitting hole in the subtree of `x`, which holds one.
    fn descend_rightmost(&self, mut x: usize, n: u64, class: u32) -> usize {
        loop {
            let r = self.nodes[x].right;
            if self.agg(r, class) >= n {
                x = r;
            } else if self.own_fit(x, class) >= n {
                return x;
            } else {
                x = self.nodes[x].left;
            }
        }
    }

    // --- structure ---

    fn new_node(&mut self, start: u64, end: u64) -> usize {
        let node = Node {
            start,
            end,
            left: NIL,
            right: NIL,
            height: 1,
        };
        let x = if self.free_head == NIL {
            self.nodes.push(node);
            self.aggs.resize(self.aggs.len() + self.k, 0);
            self.nodes.len() - 1
        } else {
            let x = self.free_head;
            self.free_head = self.nodes[x].left;
            self.nodes[x] = node;
            x
        };
        self.pull(x);
        x
    }

    fn free_node(&mut self, x: usize) {
        self.nodes[x] = Node {
            left: self.free_head,
            ..EMPTY
        };
        self.free_head = x;
    }

    fn insert(&mut self, start: u64, end: u64) {
        let x = self.new_node(start, end);
        self.root = self.insert_at(self.root, x);
    }

    fn insert_at(&mut self, t: usize, x: usize) -> usize {
        if t == NIL {
            return x;
        }
        if self.nodes[x].start < self.nodes[t].start {
            let l = self.insert_at(self.nodes[t].left, x);
            self.nodes[t].left = l;
        } else {
            let r = self.insert_at(self.nodes[t].right, x);
            self.nodes[t].right = r;
        }
        self.rebalance(t)
    }

    fn delete_at(&mut self, t: usize, key: u64) -> usize {
        if t == NIL {
            return NIL;
        }
        let start = self.nodes[t].start;
        if key < start {
            let l = self.delete_at(self.nodes[t].left, key);
            self.nodes[t].left = l;
        } else if key > start {
            let r = self.delete_at(self.nodes[t].right, key);
            self.nodes[t].right = r;
        } else {
            let Node { left, right, .. } = self.nodes[t];
            self.free_node(t);
            if left == NIL {
                return right;
            }
            if right == NIL {
                return left;
            }
            // The successor takes `t`'s place.
            let (rest, m) = self.take_min(right);
            self.nodes[m].left = left;
            self.nodes[m].right = rest;
            return self.rebalance(m);
        }
        self.rebalance(t)
    }

    /// Detaches the least node of the subtree `t`: (the rest, that node).
    fn take_min(&mut self, t: usize) -> (usize, usize) {
        let l = self.nodes[t].left;
        if l == NIL {
            return (self.nodes[t].right, t);
        }
        let (rest, m) = self.take_min(l);
        self.nodes[t].left = rest;
        (self.rebalance(t), m)
    }

    /// Re-derives the aggregates on the path to the hole that starts at
    /// `key`, after that hole changed in place.
    fn touch(&mut self, key: u64) {
        let mut path = [NIL; MAX_DEPTH];
        let mut depth = 0;
        let mut x = self.root;
        while x != NIL {
            path[depth] = x;
            depth += 1;
            let start = self.nodes[x].start;
            x = if key < start {
                self.nodes[x].left
            } else if key > start {
                self.nodes[x].right
            } else {
                NIL
            };
        }
        for &y in path[..depth].iter().rev() {
            self.pull(y);
        }
    }

    fn height(&self, x: usize) -> i64 {
        i64::from(self.nodes[x].height)
    }

    fn rebalance(&mut self, t: usize) -> usize {
        let Node { left, right, .. } = self.nodes[t];
        let balance = self.height(left) - self.height(right);
        if balance > 1 {
            let l = &self.nodes[left];
            if self.height(l.left) < self.height(l.right) {
                self.nodes[t].left = self.rotate_left(left);
            }
            return self.rotate_right(t);
        }
        if balance < -1 {
            let r = &self.nodes[right];
            if self.height(r.right) < self.height(r.left) {
                self.nodes[t].right = self.rotate_right(right);
            }
            return self.rotate_left(t);
        }
        self.pull(t);
        t
    }

    fn rotate_right(&mut self, y: usize) -> usize {
        let x = self.nodes[y].left;
        self.nodes[y].left = self.nodes[x].right;
        self.nodes[x].right = y;
        self.pull(y);
        self.pull(x);
        x
    }

    fn rotate_left(&mut self, x: usize) -> usize {
        let y = self.nodes[x].right;
        self.nodes[x].right = self.nodes[y].left;
        self.nodes[y].left = x;
        self.pull(x);
        self.pull(y);
        y
    }

    /// Height and aggregates of `x` from its hole and its children.
    fn pull(&mut self, x: usize) {
        let Node {
            start,
            end,
            left,
            right,
            ..
        } = self.nodes[x];
        self.nodes[x].height = 1 + self.nodes[left].height.max(self.nodes[right].height);
        let k = self.k;
        let mut acc = [0u64; MAX_K];
        let acc = &mut acc[..k];
        let (len, lead) = (end - start, start.wrapping_neg());
        for (i, a) in (0u32..).zip(acc.iter_mut()) {
            *a = len.saturating_sub(lead & mask(i));
        }
        for child in [left, right] {
            for (a, &c) in acc.iter_mut().zip(&self.aggs[child * k..child * k + k]) {
                *a = (*a).max(c);
            }
        }
        self.aggs[x * k..x * k + k].copy_from_slice(acc);
    }

    #[cfg(test)]
    fn for_each(&self, x: usize, f: &mut impl FnMut(u64, u64)) {
        if x == NIL {
            return;
        }
        self.for_each(self.nodes[x].left, f);
        f(self.nodes[x].start, self.nodes[x].end);
        self.for_each(self.nodes[x].right, f);
    }

    /// The holes in order, for tests and audits.
    #[cfg(test)]
    pub(super) fn to_vec(&self) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        self.for_each(self.root, &mut |s, e| v.push((s, e)));
        v
    }

    /// Checks every invariant: order, disjoint unmerged holes inside the
    /// aperture, AVL balance, heights and aggregates.
    #[cfg(test)]
    pub(super) fn check(&self) {
        let holes = self.to_vec();
        for w in holes.windows(2) {
            assert!(w[0].1 < w[1].0, "holes {w:?} overlap or touch");
        }
        for &(s, e) in &holes {
            assert!(self.lo <= s && s < e && e <= self.hi, "hole {s:#x}..{e:#x}");
        }
        self.check_node(self.root);
    }

    #[cfg(test)]
    fn check_node(&self, x: usize) -> u32 {
        if x == NIL {
            return 0;
        }
        let Node {
            start,
            end,
            left,
            right,
            height,
        } = self.nodes[x];
        let (hl, hr) = (self.check_node(left), self.check_node(right));
        assert!(hl.abs_diff(hr) <= 1, "unbalanced");
        assert_eq!(height, 1 + hl.max(hr));
        for i in 0..self.k as u32 {
            let want = fit(start, end, i)
                .max(self.agg(left, i))
                .max(self.agg(right, i));
            assert_eq!(self.agg(x, i), want, "aggregate {i} of {start:#x}");
        }
        height
    }
}

#[cfg(test)]
mod tests {
    use super::HoleTree;

    #[test]
    fn carve_and_release_merge_back() {
        let mut t = HoleTree::new(16, 16 + 64);
        let (h, p) = t.find(4, 0, u64::MAX).unwrap();
        assert_eq!(p, 16 + 60, "top-down");
        t.carve(h, p, 4);
        let (h, q) = t.find(4, 3, 70).unwrap();
        assert_eq!(q, 64, "highest 8-aligned place ending by granule 70");
        t.carve(h, q, 4);
        t.check();
        assert_eq!(t.to_vec(), [(16, 64), (68, 76)]);
        assert_eq!(t.release(66, 4), Err(()), "overlaps a hole");
        t.release(76, 4).unwrap();
        t.release(64, 4).unwrap();
        t.check();
        assert_eq!(t.to_vec(), [(16, 80)]);
    }

    #[test]
    fn limit_and_single_alignment() {
        let mut t = HoleTree::new(3, 100);
        // Limit inside the hole: the highest aligned place below it.
        assert_eq!(t.find(5, 2, 50).map(|f| f.1), Some(44));
        // 128-aligned in [3, 100): nowhere; 64-aligned: only 64.
        assert_eq!(t.find(1, 7, u64::MAX), None);
        assert_eq!(t.find(36, 6, u64::MAX).map(|f| f.1), Some(64));
        assert_eq!(t.find(37, 6, u64::MAX), None);
        let (h, p) = t.find(97, 0, u64::MAX).unwrap();
        t.carve(h, p, 97);
        assert_eq!(t.holes(), 0);
        assert_eq!(t.find(1, 0, u64::MAX), None);
    }

    #[test]
    fn many_holes_stay_balanced() {
        let n = if cfg!(miri) { 64 } else { 2048 };
        let mut t = HoleTree::new(0, 4 * n);
        let mut taken = alloc::vec::Vec::new();
        while let Some((h, p)) = t.find(1, 0, u64::MAX) {
            t.carve(h, p, 1);
            taken.push(p);
        }
        // Free every other granule: n * 2 holes of one granule.
        for &p in taken.iter().filter(|&&p| p % 2 == 0) {
            t.release(p, 1).unwrap();
        }
        t.check();
        assert_eq!(t.holes() as u64, 2 * n);
        // No two adjacent granules are free, at any alignment.
        assert_eq!(t.find(2, 0, u64::MAX), None);
        for &p in taken.iter().filter(|&&p| p % 2 == 1) {
            t.release(p, 1).unwrap();
        }
        t.check();
        assert_eq!(t.to_vec(), [(0, 4 * n)]);
    }
}
