//! The multi-pass layers found so far by the rounds of full loop detection.

use rustc_hash::FxHashMap;

use crate::graph::NONE;

/// Multi-pass layers found so far; nodes not in any are single-pass.
pub(super) struct LayerTable {
    pub(super) layer_of: Vec<u32>,
    pub(super) members: Vec<Vec<u32>>,
    touched: FxHashMap<u32, usize>,
}

impl LayerTable {
    pub(super) fn new(n: usize) -> Self {
        Self {
            layer_of: vec![NONE; n],
            members: Vec::new(),
            touched: FxHashMap::default(),
        }
    }

    /// Makes `group` (sorted positions) one layer, unless that would split a layer that one of
    /// its members already belongs to (§6.2 step 4: later rounds may not fragment earlier ones).
    pub(super) fn assign(&mut self, group: &[u32]) {
        self.touched.clear();
        for &m in group {
            let old = self.layer_of[m as usize];
            if old != NONE {
                *self.touched.entry(old).or_insert(0) += 1;
            }
        }
        if self
            .touched
            .iter()
            .any(|(&old, &count)| count < self.members[old as usize].len())
        {
            return;
        }
        for &old in self.touched.keys() {
            self.members[old as usize] = Vec::new();
        }
        let id = self.members.len() as u32;
        for &m in group {
            self.layer_of[m as usize] = id;
        }
        self.members.push(group.to_vec());
    }
}
