//! The house rule "data flows one way", checked: in each crate, the modules
//! below one parent form layers. An item of module `a` that names (by a
//! `crate::`, `super::` or `self::` path, in code or in a macro's tokens)
//! something in a sibling module `b` makes an edge `a -> b`; a cycle of such
//! edges is a failure. A module may name its ancestors and descendants
//! freely, doc comments do not count, and neither does `#[cfg(test)]` code.
//!
//! ```text
//! cargo run -p dmaspace-layers -- src     # the graph of a crate, and its cycles
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// A module's path from the crate root (`[]` is the root).
pub type ModPath = Vec<String>;

/// One reference that makes an edge, for the report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The sibling module that names the other.
    pub from: ModPath,
    /// The sibling module named.
    pub to: ModPath,
    /// The file and the path as written, for one reference that makes it.
    pub witness: String,
}

/// The module graph of one crate.
#[derive(Debug, Default)]
pub struct Graph {
    /// Every edge between siblings, one witness each.
    pub edges: BTreeMap<(ModPath, ModPath), String>,
}

/// Why a crate could not be read.
#[derive(Debug)]
pub struct ReadError(pub String);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReadError {}

/// Reads the crate whose `lib.rs` (or `main.rs`) is in `src`.
///
/// # Errors
/// A file that cannot be read or tokenized.
pub fn read_crate(src: &Path) -> Result<Graph, ReadError> {
    let mut files = Vec::new();
    collect(src, src, &mut files)?;
    let modules: BTreeSet<ModPath> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut texts = BTreeMap::new();
    for (m, p) in &files {
        let text =
            std::fs::read_to_string(p).map_err(|e| ReadError(format!("{}: {e}", p.display())))?;
        let tokens =
            TokenStream::from_str(&text).map_err(|e| ReadError(format!("{}: {e}", p.display())))?;
        texts.insert(m.clone(), (p.clone(), tokens));
    }
    // Names the crate root re-exports (`pub use addr::{PhysAddr, ..}`), so
    // that `crate::PhysAddr` counts as naming `addr`.
    let mut root_names: BTreeMap<String, ModPath> = BTreeMap::new();
    if let Some((_, root)) = texts.get(&Vec::new()) {
        for path in uses(root) {
            if let [first, .., last] = path.segs.as_slice() {
                let m = vec![first.clone()];
                if modules.contains(&m) {
                    root_names.insert(last.clone(), resolve(&modules, m, &path.segs[1..]));
                }
            }
        }
    }
    let mut graph = Graph::default();
    for (here, (file, tokens)) in &texts {
        for path in paths(tokens) {
            let start = match path.base {
                Base::Crate => Vec::new(),
                Base::SelfMod => here.clone(),
                Base::Super(n) => {
                    if n > here.len() {
                        continue;
                    }
                    here[..here.len() - n].to_vec()
                }
            };
            let mut target = resolve(&modules, start.clone(), &path.segs);
            if target.is_empty() && path.base == Base::Crate {
                if let Some(first) = path.segs.first() {
                    if let Some(m) = root_names.get(first) {
                        target.clone_from(m);
                    }
                }
            }
            if let Some((from, to)) = siblings(here, &target) {
                let witness = format!("{}: {}", file.display(), path.written());
                graph.edges.entry((from, to)).or_insert(witness);
            }
        }
    }
    Ok(graph)
}

impl Graph {
    /// Each cycle between siblings, as the edges that close it.
    #[must_use]
    pub fn cycles(&self) -> Vec<Vec<Edge>> {
        let mut adj: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
        for (from, to) in self.edges.keys() {
            adj.entry(from).or_default().push(to);
        }
        let mut out = Vec::new();
        let mut seen_cycles = BTreeSet::new();
        for start in adj.keys() {
            // Shortest path back to `start`, breadth first.
            let mut prev: BTreeMap<&ModPath, &ModPath> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([*start]);
            let mut found = None;
            while let Some(n) = queue.pop_front() {
                for &m in adj.get(n).map_or(&[][..], Vec::as_slice) {
                    if m == *start {
                        found = Some(n);
                        break;
                    }
                    if !prev.contains_key(m) {
                        prev.insert(m, n);
                        queue.push_back(m);
                    }
                }
                if found.is_some() {
                    break;
                }
            }
            let Some(last) = found else { continue };
            let mut nodes = vec![last];
            while let Some(p) = prev.get(nodes[nodes.len() - 1]) {
                nodes.push(p);
            }
            nodes.reverse();
            if nodes[0] != *start {
                nodes.insert(0, start);
            }
            let key: BTreeSet<&ModPath> = nodes.iter().copied().collect();
            if !seen_cycles.insert(key) {
                continue;
            }
            let mut cycle = Vec::new();
            for (i, from) in nodes.iter().enumerate() {
                let to = nodes[(i + 1) % nodes.len()];
                let witness = self.edges[&((*from).clone(), to.clone())].clone();
                cycle.push(Edge {
                    from: (*from).clone(),
                    to: to.clone(),
                    witness,
                });
            }
            out.push(cycle);
        }
        out
    }
}

/// The two sibling modules an edge `here -> target` is between, if any: none
/// when one is an ancestor of the other.
fn siblings(here: &[String], target: &[String]) -> Option<(ModPath, ModPath)> {
    let common = here.iter().zip(target).take_while(|(a, b)| a == b).count();
    if common == here.len() || common == target.len() {
        return None;
    }
    Some((here[..=common].to_vec(), target[..=common].to_vec()))
}

/// The deepest module that `start::segs...` names.
fn resolve(modules: &BTreeSet<ModPath>, mut at: ModPath, segs: &[String]) -> ModPath {
    for s in segs {
        if s == "super" {
            at.pop();
            continue;
        }
        at.push(s.clone());
        if !modules.contains(&at) {
            at.pop();
            break;
        }
    }
    at
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(ModPath, PathBuf)>) -> Result<(), ReadError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| ReadError(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| ReadError(format!("{}: {e}", dir.display())))?;
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .map_err(|e| ReadError(e.to_string()))?;
            let mut m: ModPath = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if m.last().is_some_and(|l| l == "mod")
                || (m.len() == 1 && (m[0] == "lib" || m[0] == "main"))
            {
                m.pop();
            }
            out.push((m, path));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Crate,
    SelfMod,
    Super(usize),
}

#[derive(Debug, Clone)]
struct RefPath {
    base: Base,
    segs: Vec<String>,
}

impl RefPath {
    fn written(&self) -> String {
        let base = match self.base {
            Base::Crate => "crate".to_owned(),
            Base::SelfMod => "self".to_owned(),
            Base::Super(n) => vec!["super"; n].join("::"),
        };
        std::iter::once(base)
            .chain(self.segs.iter().cloned())
            .collect::<Vec<_>>()
            .join("::")
    }
}

/// Paths of the root's `use` items (for its re-exports).
fn uses(tokens: &TokenStream) -> Vec<RefPath> {
    let toks: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if let TokenTree::Ident(id) = &toks[i] {
            if id == "use" {
                let mut segs = Vec::new();
                let mut j = i + 1;
                tree(&toks, &mut j, &mut segs, Base::Crate, &mut out);
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Every `crate::`, `super::`, `self::` path in `tokens`, outside
/// `#[cfg(test)]` items.
fn paths(tokens: &TokenStream) -> Vec<RefPath> {
    let mut out = Vec::new();
    scan(tokens, &mut out);
    out
}

fn is_colons(toks: &[TokenTree], i: usize) -> bool {
    matches!((toks.get(i), toks.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
}

fn is_cfg_test(group: &TokenTree) -> bool {
    let TokenTree::Group(g) = group else {
        return false;
    };
    if g.delimiter() != Delimiter::Bracket {
        return false;
    }
    let inner: Vec<TokenTree> = g.stream().into_iter().collect();
    matches!(inner.first(), Some(TokenTree::Ident(i)) if i == "cfg")
        && inner.get(1).is_some_and(|t| {
            let TokenTree::Group(args) = t else {
                return false;
            };
            let words: Vec<String> = args.stream().into_iter().map(|t| t.to_string()).collect();
            words.first().is_some_and(|w| w == "test")
        })
}

fn scan(tokens: &TokenStream, out: &mut Vec<RefPath>) {
    let toks: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let mut i = 0;
    while i < toks.len() {
        // `#[cfg(test)] item`: skip the item (up to its body or `;`).
        if matches!(&toks[i], TokenTree::Punct(p) if p.as_char() == '#')
            && toks.get(i + 1).is_some_and(is_cfg_test)
        {
            i += 2;
            while i < toks.len() {
                match &toks[i] {
                    TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                        i += 1;
                        break;
                    }
                    TokenTree::Punct(p) if p.as_char() == ';' => {
                        i += 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
            continue;
        }
        match &toks[i] {
            TokenTree::Group(g) => {
                scan(&g.stream(), out);
                i += 1;
            }
            TokenTree::Ident(id) if is_colons(&toks, i + 1) => {
                let base = match id.to_string().as_str() {
                    "crate" => Some(Base::Crate),
                    "self" => Some(Base::SelfMod),
                    "super" => {
                        let mut n = 1;
                        while is_colons(&toks, i + 1 + (n - 1) * 3)
                            && matches!(toks.get(i + 3 * n), Some(TokenTree::Ident(s)) if s == "super")
                        {
                            n += 1;
                        }
                        i += 3 * (n - 1);
                        Some(Base::Super(n))
                    }
                    _ => None,
                };
                // `foo::crate` cannot happen; `$crate::` is a crate path.
                if let Some(base) = base {
                    let mut j = i + 3;
                    let mut segs = Vec::new();
                    tree(&toks, &mut j, &mut segs, base, out);
                    i = j;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
}

/// Reads a path tree at `toks[*j..]` (`a::b::{c, d::e}`) after `prefix`.
fn tree(
    toks: &[TokenTree],
    j: &mut usize,
    prefix: &mut Vec<String>,
    base: Base,
    out: &mut Vec<RefPath>,
) {
    let start_len = prefix.len();
    loop {
        match toks.get(*j) {
            Some(TokenTree::Ident(id)) => {
                prefix.push(id.to_string());
                *j += 1;
                if is_colons(toks, *j) {
                    *j += 2;
                    continue;
                }
                out.push(RefPath {
                    base,
                    segs: prefix.clone(),
                });
                break;
            }
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                *j += 1;
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                let mut k = 0;
                while k < inner.len() {
                    let mut p = prefix.clone();
                    if matches!(&inner[k], TokenTree::Ident(s) if s == "self") {
                        out.push(RefPath { base, segs: p });
                        k += 1;
                    } else {
                        tree(&inner, &mut k, &mut p, base, out);
                    }
                    // Skip to the next top-level comma.
                    while k < inner.len()
                        && !matches!(&inner[k], TokenTree::Punct(c) if c.as_char() == ',')
                    {
                        k += 1;
                    }
                    k += 1;
                }
                break;
            }
            _ => {
                out.push(RefPath {
                    base,
                    segs: prefix.clone(),
                });
                break;
            }
        }
    }
    prefix.truncate(start_len);
}
