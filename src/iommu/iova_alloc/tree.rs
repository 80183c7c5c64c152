//! The free-hole index: an AVL tree of the free ranges ("holes"), keyed by
//! start, in granule units.
//!
//! Each node is augmented, for every alignment class `i` (alignment `2^i`
//! granules) in use, with the longest allocation aligned to `2^i` that
//! one hole of its subtree can hold:
//! `agg[i] = max over holes h of (h.end - align_up(h.start, 2^i))`.
//! With it a search never enters a subtree that cannot serve the request,
//! so finding the highest fitting place below a limit is one walk down and
//! at most one walk back up and down again: O(log n) in the number of holes
//! (at most live ranges + 1), for any size, alignment and limit. Alignments
//! of `2^k` granules or more (`2^k` ≥ the aperture) have at most one
//! aligned place in the whole aperture, which is checked directly.
//!
//! Changing one hole re-derives the aggregates of its ancestors, and stops
//! where a subtree's summary did not change: O(c log n) word operations for
//! `c` classes in use. Classes come into use in chunks of four, the first
//! time a request asks for that alignment (one O(n) rebuild, at most 16 in
//! the tree's life); a driver asking for alignments up to 4 MiB (classes
//! 0–10 at 4 KiB granules) pays for 12, whatever the aperture. Nodes live in
//! an arena (`Vec`) with a free list, so the tree is plain safe code and
//! costs one node up front, whatever the aperture.

use alloc::vec::Vec;

/// The sentinel node: height 0, all aggregates 0, never a hole.
const NIL: usize = 0;
/// Aggregates are stored and computed in chunks of this many classes (one
/// 256-bit vector).
const LANES: usize = 4;
type Chunk = [u64; LANES];

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
    /// `chunks` chunks of aggregates per node, node-major (row `NIL`
    /// stays zero); class `i` is lane `i % LANES` of chunk `i / LANES`.
    aggs: Vec<Chunk>,
    /// Alignment classes that may need aggregates: `2^k >= hi - lo`.
    k: usize,
    /// Chunks in use: classes `0..chunks * LANES` have aggregates;
    /// at most `ceil(k / LANES)`.
    chunks: usize,
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
        let chunks = k.div_ceil(LANES).min(1);
        let mut t = Self {
            nodes: Vec::new(),
            aggs: Vec::new(),
            k,
            chunks,
            root: NIL,
            free_head: NIL,
            lo,
            hi,
        };
        t.nodes.push(EMPTY);
        t.aggs.resize(chunks, [0; LANES]);
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
    pub(super) fn find(&mut self, n: u64, class: u32, lim_end: u64) -> Option<(usize, u64)> {
        let lim_end = lim_end.min(self.hi);
        if (class as usize) >= self.k {
            return self.find_single(n, class, lim_end);
        }
        if (class as usize) >= self.chunks * LANES {
            self.widen(class as usize);
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

    /// Brings class `class < k` (and its chunk) into use: every node's
    /// aggregates re-derived, O(n).
    #[cold]
    fn widen(&mut self, class: usize) {
        self.chunks = (class / LANES + 1).min(self.k.div_ceil(LANES));
        self.aggs.clear();
        self.aggs.resize(self.nodes.len() * self.chunks, [0; LANES]);
        self.rebuild(self.root);
    }

    fn rebuild(&mut self, x: usize) {
        if x != NIL {
            self.rebuild(self.nodes[x].left);
            self.rebuild(self.nodes[x].right);
            self.pull(x);
        }
    }

    /// Takes `[pos, pos + n)` out of hole `h` (a place `find` returned).
    pub(super) fn carve(&mut self, h: usize, pos: u64, n: u64) {
        let Node { start, end, .. } = self.nodes[h];
        debug_assert!(start <= pos && pos + n <= end, "carve outside the hole");
        let tail = pos + n;
        match (pos == start, tail == end) {
            (true, true) => self.root = self.delete_at(self.root, start).0,
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
                self.root = self.delete_at(self.root, start).0;
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
        let i = class as usize;
        self.aggs[x * self.chunks + i / LANES][i % LANES]
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
    /// where it turned right and their left subtrees; each such node is
    /// above its left subtree and below everything met deeper, so the last
    /// candidate seen is the answer, and the aggregate says at once whether
    /// a left subtree holds a fit (then one descent finds it).
    fn rightmost_fit(&self, bound: u64, n: u64, class: u32) -> Option<usize> {
        // The best so far: a fitting hole, or a subtree that holds one.
        let mut best = None;
        let mut x = self.root;
        while x != NIL {
            let Node {
                start, left, right, ..
            } = self.nodes[x];
            if start >= bound {
                x = left;
                continue;
            }
            if self.own_fit(x, class) >= n {
                best = Some((x, false));
            } else if self.agg(left, class) >= n {
                best = Some((left, true));
            }
            x = right;
        }
        best.map(|(x, subtree)| {
            if subtree {
                self.descend_rightmost(x, n, class)
            } else {
                x
            }
        })
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
            self.aggs.resize(self.aggs.len() + self.chunks, [0; LANES]);
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
        self.root = self.insert_at(self.root, x).0;
    }

    // The structural operations return the new root of the subtree and
    // whether its summary (root, height or aggregates) changed: once it
    // has not, no ancestor changes either, and the walk back up stops
    // re-deriving.

    fn insert_at(&mut self, t: usize, x: usize) -> (usize, bool) {
        if t == NIL {
            return (x, true);
        }
        let changed = if self.nodes[x].start < self.nodes[t].start {
            let (l, changed) = self.insert_at(self.nodes[t].left, x);
            self.nodes[t].left = l;
            changed
        } else {
            let (r, changed) = self.insert_at(self.nodes[t].right, x);
            self.nodes[t].right = r;
            changed
        };
        if changed {
            self.rebalance(t)
        } else {
            (t, false)
        }
    }

    fn delete_at(&mut self, t: usize, key: u64) -> (usize, bool) {
        if t == NIL {
            return (NIL, false);
        }
        let start = self.nodes[t].start;
        let changed = if key < start {
            let (l, changed) = self.delete_at(self.nodes[t].left, key);
            self.nodes[t].left = l;
            changed
        } else if key > start {
            let (r, changed) = self.delete_at(self.nodes[t].right, key);
            self.nodes[t].right = r;
            changed
        } else {
            let Node { left, right, .. } = self.nodes[t];
            self.free_node(t);
            if left == NIL {
                return (right, true);
            }
            if right == NIL {
                return (left, true);
            }
            // The successor takes `t`'s place.
            let (rest, m, _) = self.take_min(right);
            self.nodes[m].left = left;
            self.nodes[m].right = rest;
            return (self.rebalance(m).0, true);
        };
        if changed {
            self.rebalance(t)
        } else {
            (t, false)
        }
    }

    /// Detaches the least node of the subtree `t`: (the rest, that node,
    /// whether the rest's summary changed).
    fn take_min(&mut self, t: usize) -> (usize, usize, bool) {
        let l = self.nodes[t].left;
        if l == NIL {
            return (self.nodes[t].right, t, true);
        }
        let (rest, m, changed) = self.take_min(l);
        self.nodes[t].left = rest;
        if !changed {
            return (t, m, false);
        }
        let (t, changed) = self.rebalance(t);
        (t, m, changed)
    }

    /// Re-derives the aggregates on the path to the hole that starts at
    /// `key`, after that hole changed in place; stops where nothing changes.
    fn touch(&mut self, key: u64) {
        self.touch_at(self.root, key);
    }

    /// Whether `x`'s subtree summary changed.
    fn touch_at(&mut self, x: usize, key: u64) -> bool {
        if x == NIL {
            return false;
        }
        let Node {
            start, left, right, ..
        } = self.nodes[x];
        let below = if key < start {
            self.touch_at(left, key)
        } else if key > start {
            self.touch_at(right, key)
        } else {
            true
        };
        below && self.pull(x)
    }

    fn height(&self, x: usize) -> i64 {
        i64::from(self.nodes[x].height)
    }

    /// Restores balance at `t` after a child changed: (new root, whether
    /// the summary changed; a rotation always counts as a change).
    fn rebalance(&mut self, t: usize) -> (usize, bool) {
        let Node { left, right, .. } = self.nodes[t];
        let balance = self.height(left) - self.height(right);
        if balance > 1 {
            let l = &self.nodes[left];
            if self.height(l.left) < self.height(l.right) {
                self.nodes[t].left = self.rotate_left(left);
            }
            return (self.rotate_right(t), true);
        }
        if balance < -1 {
            let r = &self.nodes[right];
            if self.height(r.right) < self.height(r.left) {
                self.nodes[t].right = self.rotate_right(right);
            }
            return (self.rotate_left(t), true);
        }
        (t, self.pull(t))
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

    /// Height and aggregates of `x` from its hole and its children;
    /// whether they changed.
    #[inline]
    #[expect(clippy::cast_possible_truncation, reason = "a lane index, below 64")]
    fn pull(&mut self, x: usize) -> bool {
        let Node {
            start,
            end,
            left,
            right,
            height,
        } = self.nodes[x];
        let h = 1 + self.nodes[left].height.max(self.nodes[right].height);
        self.nodes[x].height = h;
        let mut changed = h != height;
        let (len, lead) = (end - start, start.wrapping_neg());
        let c = self.chunks;
        for j in 0..c {
            let (l, r) = (self.aggs[left * c + j], self.aggs[right * c + j]);
            let mut acc: Chunk = [0; LANES];
            for (lane, a) in acc.iter_mut().enumerate() {
                // Classes past `k` compute harmless values nobody reads.
                let own = len.saturating_sub(lead & mask((j * LANES + lane) as u32));
                *a = own.max(l[lane]).max(r[lane]);
            }
            let out = &mut self.aggs[x * c + j];
            // Lane-wise, so it stays in vector registers (no `memcmp`).
            let diff = out.iter().zip(&acc).fold(0, |d, (o, a)| d | (o ^ a));
            changed |= diff != 0;
            *out = acc;
        }
        changed
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
        for i in 0..self.k.min(self.chunks * LANES) as u32 {
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

    /// Random carves and releases against a bitmap; every invariant
    /// (balance, heights, every aggregate) checked after each step, and
    /// every refusal checked against an exhaustive search.
    #[test]
    fn random_steps_keep_every_invariant() {
        const N: u64 = 256;
        let steps = if cfg!(miri) { 60 } else { 4000 };
        let mut t = HoleTree::new(5, 5 + N);
        let mut used = [false; N as usize];
        let mut taken: alloc::vec::Vec<(u64, u64)> = alloc::vec::Vec::new();
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..steps {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if rng % 5 < 3 {
                let n = 1 + (rng >> 8) % 12;
                let class = ((rng >> 16) % 5) as u32;
                let lim = 5 + (rng >> 24) % (N + 8);
                let free_at = |p: u64| {
                    p >= 5
                        && p + n <= (5 + N).min(lim)
                        && (p..p + n).all(|g| !used[(g - 5) as usize])
                };
                let best = (5..5 + N)
                    .rev()
                    .find(|&p| p % (1 << class) == 0 && free_at(p));
                match t.find(n, class, lim) {
                    Some((h, p)) => {
                        assert_eq!(
                            Some(p),
                            best,
                            "highest place for {n} at 2^{class} below {lim}"
                        );
                        t.carve(h, p, n);
                        (p..p + n).for_each(|g| used[(g - 5) as usize] = true);
                        taken.push((p, n));
                    }
                    None => assert_eq!(best, None, "refused {n} at 2^{class} below {lim}"),
                }
            } else if !taken.is_empty() {
                let (p, n) = taken.swap_remove((rng >> 32) as usize % taken.len());
                t.release(p, n).unwrap();
                (p..p + n).for_each(|g| used[(g - 5) as usize] = false);
            }
            t.check();
        }
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
