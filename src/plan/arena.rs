//! Compact storage of what the planner knows of every item, so a plan of millions of items
//! fits in little memory: ids are interned to dense `u32` indexes (one table for twin ids, one
//! for model ids, one for relationship ids and names), and each item is a small fixed-size
//! [`Record`] plus its origin. Bodies are kept separately ([`super::bodies`]), and only when
//! asked (`PlanOptions::keep_bodies`).

use std::sync::Arc;

use rustc_hash::FxHashMap;
use string_interner::backend::StringBackend;
use string_interner::symbol::SymbolU32;
use string_interner::{StringInterner, Symbol};

use super::ItemId;
use crate::item::{ItemKey, ItemKind, Origin};

/// Dense index of a twin id (whether or not the input holds that twin).
pub(crate) type TwinIdx = u32;
/// Dense index of a model id (whether or not the input holds that model).
pub(crate) type ModelIdx = u32;
/// Dense index of a relationship id or relationship name.
pub(crate) type LabelIdx = u32;

/// "No item" in the index tables.
pub(crate) const NONE: u32 = u32::MAX;

/// A table of strings, each stored once in one buffer, named by a dense `u32`.
#[derive(Default)]
pub(crate) struct Names {
    inner: StringInterner<StringBackend<SymbolU32>>,
}

impl Names {
    pub fn intern(&mut self, s: &str) -> u32 {
        self.inner.get_or_intern(s).to_usize() as u32
    }

    pub fn find(&self, s: &str) -> Option<u32> {
        self.inner.get(s).map(|sym| sym.to_usize() as u32)
    }

    pub fn name(&self, idx: u32) -> &str {
        SymbolU32::try_from_usize(idx as usize).and_then(|sym| self.inner.resolve(sym)).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }
}

/// What the planner keeps of one item. A twin's `model` is `None` for a patch of an existing
/// twin (it needs no model).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Record {
    Model { id: ModelIdx, body_len: u32, meta: u32 },
    Twin { id: TwinIdx, model: Option<ModelIdx> },
    Relationship { source: TwinIdx, target: TwinIdx, id: LabelIdx, name: LabelIdx },
}

impl Record {
    pub fn kind(&self) -> ItemKind {
        match self {
            Record::Model { .. } => ItemKind::Model,
            Record::Twin { .. } => ItemKind::Twin,
            Record::Relationship { .. } => ItemKind::Relationship,
        }
    }
}

/// What loading needs to know of a model beyond its record (models are few).
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelMeta {
    pub item: ItemId,
    /// The `extends` and Component schemas as the input wrote them (an upload that fails falls
    /// back to uploading in their order).
    pub depends_on: Vec<String>,
    /// `extends` and Component schemas: must be uploaded first or in the same batch.
    pub deps: Vec<ModelIdx>,
    pub extends: Vec<ModelIdx>,
    pub component_schemas: Vec<ModelIdx>,
    pub has_components: bool,
    /// 2 or 3 (0 when the Interface could not be read).
    pub dtdl_version: u8,
}

/// Every item's record, origin and identity.
#[derive(Default)]
pub(crate) struct Arena {
    pub twins: Names,
    pub models: Names,
    pub labels: Names,
    pub records: Vec<Record>,
    files: Vec<Arc<str>>,
    file_of: Vec<u32>,
    line_of: Vec<u64>,
    pub model_meta: Vec<ModelMeta>,
    /// By `TwinIdx`: the item holding that twin (its first occurrence), or NONE.
    pub twin_item: Vec<ItemId>,
    /// By `ModelIdx`: the item holding that model (its first occurrence), or NONE.
    pub model_item: Vec<ItemId>,
    /// (source, relationship id) → the item holding it (its first occurrence).
    pub relationship_item: FxHashMap<(TwinIdx, LabelIdx), ItemId>,
}

impl Arena {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Adds an item's record and origin; returns its id.
    pub fn push(&mut self, record: Record, origin: &Origin) -> ItemId {
        let id = self.records.len() as ItemId;
        self.records.push(record);
        let same_file = self.files.last().is_some_and(|f| Arc::ptr_eq(f, &origin.file) || **f == *origin.file);
        if !same_file {
            self.files.push(origin.file.clone());
        }
        self.file_of.push(self.files.len() as u32 - 1);
        self.line_of.push(origin.line);
        id
    }

    pub fn twin(&mut self, id: &str) -> TwinIdx {
        let idx = self.twins.intern(id);
        if idx as usize >= self.twin_item.len() {
            self.twin_item.resize(idx as usize + 1, NONE);
        }
        idx
    }

    pub fn model(&mut self, id: &str) -> ModelIdx {
        let idx = self.models.intern(id);
        if idx as usize >= self.model_item.len() {
            self.model_item.resize(idx as usize + 1, NONE);
        }
        idx
    }

    pub fn record(&self, id: ItemId) -> Record {
        self.records[id as usize]
    }

    pub fn origin(&self, id: ItemId) -> Origin {
        let i = id as usize;
        Origin { file: self.files[self.file_of[i] as usize].clone(), line: self.line_of[i] }
    }

    pub fn key(&self, id: ItemId) -> ItemKey {
        match self.record(id) {
            Record::Model { id, .. } => ItemKey::Model { id: self.models.name(id).to_string() },
            Record::Twin { id, .. } => ItemKey::Twin { id: self.twins.name(id).to_string() },
            Record::Relationship { source, id, .. } => ItemKey::Relationship {
                source: self.twins.name(source).to_string(),
                id: self.labels.name(id).to_string(),
            },
        }
    }

    /// The item a twin index names, if the input holds it.
    pub fn twin_item_of(&self, twin: TwinIdx) -> Option<ItemId> {
        self.twin_item.get(twin as usize).copied().filter(|&i| i != NONE)
    }

    pub fn model_item_of(&self, model: ModelIdx) -> Option<ItemId> {
        self.model_item.get(model as usize).copied().filter(|&i| i != NONE)
    }

    pub fn meta_of(&self, id: ItemId) -> Option<&ModelMeta> {
        match self.record(id) {
            Record::Model { meta, .. } => self.model_meta.get(meta as usize),
            _ => None,
        }
    }
}
