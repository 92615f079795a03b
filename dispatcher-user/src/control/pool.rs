//! What the pool should be, from the file and the operator's runtime changes: pure functions,
//! tested without a dispatcher.
//!
//! Rule (the operations issue, and what OpenSIPS #3059/#3069/#3105 got wrong): a change made with
//! `ctl` (drain, disable, add, remove) survives a reload unless the file changes *that
//! processor*; then the file wins for it, and only for it. "Changes" means its entry in the new
//! file differs from its entry in the previous file (an entry appearing or disappearing is a
//! change).
use std::collections::{BTreeMap, BTreeSet};

use crate::pool::{Admin, ProcessorEntry};

/// Processors by id.
pub type Entries = BTreeMap<u16, ProcessorEntry>;

/// The operator's runtime changes on top of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    /// Operator states other than active.
    pub admin: BTreeMap<u16, Admin>,
    /// Processors added with `ctl add`.
    pub added: Entries,
    /// Processors removed with `ctl remove`.
    pub removed: BTreeSet<u16>,
}

impl Overlay {
    /// The operator state of `id` (active unless set).
    pub fn admin(&self, id: u16) -> Admin {
        self.admin.get(&id).copied().unwrap_or_default()
    }

    /// Sets the operator state of `id` (active is the default and is not stored).
    pub fn set_admin(&mut self, id: u16, admin: Admin) {
        if admin == Admin::Active {
            self.admin.remove(&id);
        } else {
            self.admin.insert(id, admin);
        }
    }

    /// Forgets every runtime change of `id`.
    fn forget(&mut self, id: u16) {
        self.admin.remove(&id);
        self.added.remove(&id);
        self.removed.remove(&id);
    }
}

/// The pool to run: the file's entries, minus those removed at runtime, plus those added.
pub fn effective(file: &Entries, overlay: &Overlay) -> Entries {
    let mut out: Entries = file
        .iter()
        .filter(|(id, _)| !overlay.removed.contains(id))
        .map(|(id, e)| (*id, e.clone()))
        .collect();
    for (id, e) in &overlay.added {
        out.insert(*id, e.clone());
    }
    out
}

/// The overlay to keep after the file went from `old` to `new`: runtime changes of every
/// processor the file changed are dropped (the file wins for those); the rest are kept.
/// Returns the kept overlay and the ids whose runtime changes were dropped.
pub fn rebase(old: &Entries, new: &Entries, overlay: &Overlay) -> (Overlay, Vec<u16>) {
    let mut kept = overlay.clone();
    let mut dropped = Vec::new();
    let touched: BTreeSet<u16> = overlay
        .admin
        .keys()
        .chain(overlay.added.keys())
        .chain(overlay.removed.iter())
        .copied()
        .collect();
    for id in touched {
        if old.get(&id) != new.get(&id) {
            kept.forget(id);
            dropped.push(id);
        }
    }
    (kept, dropped)
}

/// One step from the running pool to the wanted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A processor to add.
    Add(ProcessorEntry),
    /// A processor to take out.
    Remove(u16),
    /// Capacity, weight or health settings changed; same kind and address.
    Update(ProcessorEntry),
    /// Kind or address changed: the old one goes and a new one comes under the same id.
    Replace(ProcessorEntry),
}

/// The changes that turn `running` into `wanted`, in id order.
pub fn diff(running: &Entries, wanted: &Entries) -> Vec<Change> {
    let ids: BTreeSet<u16> = running.keys().chain(wanted.keys()).copied().collect();
    ids.into_iter()
        .filter_map(|id| match (running.get(&id), wanted.get(&id)) {
            (Some(_), None) => Some(Change::Remove(id)),
            (None, Some(w)) => Some(Change::Add(w.clone())),
            (Some(r), Some(w)) if r == w => None,
            (Some(r), Some(w)) if r.kind == w.kind && r.addr == w.addr => {
                Some(Change::Update(w.clone()))
            }
            (Some(_), Some(w)) => Some(Change::Replace(w.clone())),
            (None, None) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{lan::HealthSpec, pool::Kind};

    fn e(id: u16, port: u16, capacity: u32) -> ProcessorEntry {
        ProcessorEntry {
            id,
            kind: Kind::Remote,
            addr: format!("198.18.0.10:{port}").parse().unwrap(),
            capacity,
            weight: 1,
            health: HealthSpec::default(),
        }
    }

    fn pool(list: &[ProcessorEntry]) -> Entries {
        list.iter().map(|x| (x.id, x.clone())).collect()
    }

    #[test]
    fn runtime_changes_survive_a_reload_that_does_not_touch_their_processor() {
        let old = pool(&[e(0, 5070, 10), e(1, 5071, 10), e(2, 5072, 10)]);
        let mut ov = Overlay::default();
        ov.set_admin(0, Admin::Draining);
        ov.removed.insert(1);
        ov.added.insert(7, e(7, 5077, 5));
        // The new file changes processor 2 only and adds 3.
        let new = pool(&[
            e(0, 5070, 10),
            e(1, 5071, 10),
            e(2, 5072, 20),
            e(3, 5073, 10),
        ]);
        let (kept, dropped) = rebase(&old, &new, &ov);
        assert_eq!(kept, ov, "0, 1 and 7 are untouched by the file");
        assert!(dropped.is_empty());
        let eff = effective(&new, &kept);
        assert_eq!(eff.keys().copied().collect::<Vec<_>>(), [0, 2, 3, 7]);
        assert_eq!(kept.admin(0), Admin::Draining);
    }

    #[test]
    fn the_file_wins_for_a_processor_it_changes() {
        let old = pool(&[e(0, 5070, 10), e(1, 5071, 10)]);
        let mut ov = Overlay::default();
        ov.set_admin(0, Admin::Disabled);
        ov.removed.insert(1);
        ov.added.insert(5, e(5, 5075, 5));
        // The file changes 0's capacity, 1's address, and now defines 5 itself.
        let new = pool(&[e(0, 5070, 30), e(1, 5091, 10), e(5, 5095, 1)]);
        let (kept, dropped) = rebase(&old, &new, &ov);
        assert_eq!(kept, Overlay::default());
        assert_eq!(dropped, [0, 1, 5]);
        let eff = effective(&new, &kept);
        assert_eq!(
            eff[&5].addr.port(),
            5095,
            "the file's 5, not the runtime one"
        );
    }

    #[test]
    fn diff_names_each_kind_of_change() {
        let running = pool(&[e(0, 5070, 10), e(1, 5071, 10), e(2, 5072, 10)]);
        let wanted = pool(&[
            e(0, 5070, 10),
            e(1, 5071, 20),
            e(2, 5082, 10),
            e(4, 5074, 1),
        ]);
        assert_eq!(
            diff(&running, &wanted),
            [
                Change::Update(e(1, 5071, 20)),
                Change::Replace(e(2, 5082, 10)),
                Change::Add(e(4, 5074, 1)),
            ]
        );
        assert_eq!(diff(&wanted, &pool(&[])).len(), 4);
        assert!(diff(&running, &running).is_empty());
    }
}
