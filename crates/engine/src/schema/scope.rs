//! Partial snapshots: what a part of a snapshot covers, and merging parts.
//!
//! An automatic snapshot (taken before a migration's DDL) does not read the whole
//! catalog: before each statement it reads only what that statement can reach and
//! that no earlier part of the same snapshot already covers. Each part carries its
//! [`Scope`]; a part without a scope is the whole schema. The SQL side
//! (`migsafe._catalog(scope)`) reads exactly what a scope names, so the same scope
//! applied to the live schema gives a comparable model.
//!
//! Merging keeps the **first** capture of every object: an object that a later part
//! read but an earlier part covers (it may have been created by the migration in
//! between) is not taken from the later part. That keeps every object's state as it
//! was before the migration touched it.

use super::model::*;
use super::quote::parse_identity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What one part of a snapshot covers (names as stored, unquoted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Tables, views, sequences with their columns, constraints, indexes, triggers,
    /// policies and owned sequences.
    #[serde(default)]
    pub relations: BTreeSet<(String, String)>,
    /// Enums and domains.
    #[serde(default)]
    pub types: BTreeSet<(String, String)>,
    /// Every overload of a function name.
    #[serde(default)]
    pub functions: BTreeSet<(String, String)>,
    /// The schemas themselves.
    #[serde(default)]
    pub schemas: BTreeSet<String>,
    /// Schemas with everything in them.
    #[serde(default)]
    pub contents: BTreeSet<String>,
}

impl Scope {
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
            && self.types.is_empty()
            && self.functions.is_empty()
            && self.schemas.is_empty()
            && self.contents.is_empty()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a scope always serializes")
    }

    /// Adds everything `other` covers.
    pub fn extend(&mut self, other: &Scope) {
        self.relations.extend(other.relations.iter().cloned());
        self.types.extend(other.types.iter().cloned());
        self.functions.extend(other.functions.iter().cloned());
        self.schemas.extend(other.schemas.iter().cloned());
        self.contents.extend(other.contents.iter().cloned());
    }

    /// What of `other` this scope does not cover yet (`None`: nothing new).
    pub fn missing(&self, other: &Scope) -> Option<Scope> {
        let rel = |s: &String| self.contents.contains(s);
        let out = Scope {
            relations: other
                .relations
                .iter()
                .filter(|(s, n)| !rel(s) && !self.relations.contains(&(s.clone(), n.clone())))
                .cloned()
                .collect(),
            types: other
                .types
                .iter()
                .filter(|(s, n)| !rel(s) && !self.types.contains(&(s.clone(), n.clone())))
                .cloned()
                .collect(),
            functions: other
                .functions
                .iter()
                .filter(|(s, n)| !rel(s) && !self.functions.contains(&(s.clone(), n.clone())))
                .cloned()
                .collect(),
            schemas: other
                .schemas
                .iter()
                .filter(|s| !rel(s) && !self.schemas.contains(*s))
                .cloned()
                .collect(),
            contents: other.contents.difference(&self.contents).cloned().collect(),
        };
        (!out.is_empty()).then_some(out)
    }

    fn relation(&self, key: &str) -> bool {
        match parse_identity(key).ok().as_deref() {
            Some([s, n]) => self.named(&self.relations, s, n),
            _ => false,
        }
    }

    fn named(&self, set: &BTreeSet<(String, String)>, schema: &str, name: &str) -> bool {
        self.contents.contains(schema) || set.contains(&(schema.to_string(), name.to_string()))
    }

    /// What both scopes cover (`None` = everything).
    pub fn intersect(a: Option<&Scope>, b: Option<&Scope>) -> Option<Scope> {
        match (a, b) {
            (None, None) => None,
            (Some(x), None) | (None, Some(x)) => Some(x.clone()),
            (Some(x), Some(y)) => {
                let pairs = |f: fn(&Scope) -> &BTreeSet<(String, String)>| {
                    let (fx, fy) = (f(x), f(y));
                    fx.iter()
                        .filter(|i| fy.contains(*i) || y.contents.contains(&i.0))
                        .chain(fy.iter().filter(|i| x.contents.contains(&i.0)))
                        .cloned()
                        .collect()
                };
                Some(Scope {
                    relations: pairs(|s| &s.relations),
                    types: pairs(|s| &s.types),
                    functions: pairs(|s| &s.functions),
                    schemas: x
                        .schemas
                        .iter()
                        .filter(|n| y.schemas.contains(*n) || y.contents.contains(*n))
                        .chain(y.schemas.iter().filter(|n| x.contents.contains(*n)))
                        .cloned()
                        .collect(),
                    contents: x.contents.intersection(&y.contents).cloned().collect(),
                })
            }
        }
    }
}

/// An object a scope may cover.
pub trait Covered {
    fn covered_by(&self, sc: &Scope) -> bool;
}

impl Covered for Namespace {
    fn covered_by(&self, sc: &Scope) -> bool {
        sc.schemas.contains(&self.name) || sc.contents.contains(&self.name)
    }
}
impl Covered for Table {
    fn covered_by(&self, sc: &Scope) -> bool {
        sc.named(&sc.relations, &self.schema, &self.name)
    }
}
impl Covered for View {
    fn covered_by(&self, sc: &Scope) -> bool {
        sc.named(&sc.relations, &self.schema, &self.name)
    }
}
impl Covered for Sequence {
    fn covered_by(&self, sc: &Scope) -> bool {
        sc.named(&sc.relations, &self.schema, &self.name)
            || self.owned_by.as_deref().is_some_and(|col| {
                parse_identity(col)
                    .ok()
                    .filter(|p| p.len() == 3)
                    .is_some_and(|p| sc.named(&sc.relations, &p[0], &p[1]))
            })
    }
}
macro_rules! covered_by_table {
    ($($t:ty),*) => {$(
        impl Covered for $t {
            fn covered_by(&self, sc: &Scope) -> bool {
                sc.relation(&self.table)
            }
        }
    )*};
}
covered_by_table!(Constraint, Index, Trigger, Policy);
macro_rules! covered_by_name {
    ($field:ident: $($t:ty),*) => {$(
        impl Covered for $t {
            fn covered_by(&self, sc: &Scope) -> bool {
                sc.named(&sc.$field, &self.schema, &self.name)
            }
        }
    )*};
}
covered_by_name!(types: EnumType, Domain);
covered_by_name!(functions: Function);

/// Calls `$m!(field)` for every map of a [`Schema`].
macro_rules! each_map {
    ($m:ident) => {
        $m!(schemas);
        $m!(tables);
        $m!(views);
        $m!(sequences);
        $m!(constraints);
        $m!(indexes);
        $m!(triggers);
        $m!(policies);
        $m!(enums);
        $m!(domains);
        $m!(functions);
    };
}

/// A stored part: its scope (`None` = everything) and what it read.
#[derive(Debug, Clone)]
pub struct Part {
    pub scope: Option<Scope>,
    pub schema: Schema,
}

/// Merges the parts of a snapshot, first capture first. Returns the model and the
/// union of the scopes (`None` when some part is the whole schema).
pub fn merge(parts: &[Part]) -> (Schema, Option<Scope>) {
    if let [only] = parts {
        return (only.schema.clone(), only.scope.clone());
    }
    let mut out = Schema::default();
    let mut earlier: Vec<Option<&Scope>> = Vec::new();
    for p in parts {
        let covered = |o: &dyn Covered| {
            earlier.iter().any(|s| match s {
                None => true,
                Some(s) => o.covered_by(s),
            })
        };
        macro_rules! take {
            ($f:ident) => {
                for (k, v) in &p.schema.$f {
                    if !covered(v) {
                        out.$f.insert(k.clone(), v.clone());
                    }
                }
            };
        }
        each_map!(take);
        earlier.push(p.scope.as_ref());
    }
    let union = if parts.iter().any(|p| p.scope.is_none()) {
        None
    } else {
        let mut u = Scope::default();
        for p in parts {
            u.extend(p.scope.as_ref().expect("checked above"));
        }
        Some(u)
    };
    (out, union)
}

/// The objects of `s` that `scope` covers (everything for `None`).
pub fn restrict(mut s: Schema, scope: Option<&Scope>) -> Schema {
    let Some(sc) = scope else {
        return s;
    };
    macro_rules! keep {
        ($f:ident) => {
            s.$f.retain(|_, v| v.covered_by(sc));
        };
    }
    each_map!(keep);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::diff::tests::table;

    fn rels(names: &[(&str, &str)]) -> Scope {
        Scope {
            relations: names
                .iter()
                .map(|(s, n)| (s.to_string(), n.to_string()))
                .collect(),
            ..Scope::default()
        }
    }

    #[test]
    fn first_capture_wins() {
        // Part 1 covered public.t before the migration; part 2 read it again after
        // a column was added: the merged model keeps the original table.
        let mut before = Schema::default();
        before.insert(table("public", "t", &[("id", "int")]));
        let mut after = Schema::default();
        after.insert(table("public", "t", &[("id", "int"), ("x", "text")]));
        after.insert(table("public", "u", &[("id", "int")]));
        let parts = vec![
            Part {
                scope: Some(rels(&[("public", "t")])),
                schema: before.clone(),
            },
            Part {
                scope: Some(rels(&[("public", "u"), ("public", "t")])),
                schema: after,
            },
        ];
        let (m, u) = merge(&parts);
        assert_eq!(
            m.tables["\"public\".\"t\""],
            before.tables["\"public\".\"t\""]
        );
        assert!(m.tables.contains_key("\"public\".\"u\""));
        assert_eq!(u.unwrap().relations.len(), 2);
    }

    #[test]
    fn a_full_part_covers_everything_after_it() {
        let mut s = Schema::default();
        s.insert(table("public", "t", &[("id", "int")]));
        let parts = vec![
            Part {
                scope: None,
                schema: Schema::default(),
            },
            Part {
                scope: Some(rels(&[("public", "t")])),
                schema: s,
            },
        ];
        let (m, u) = merge(&parts);
        assert!(m.tables.is_empty());
        assert!(u.is_none());
    }

    #[test]
    fn owned_sequences_belong_to_their_table() {
        let mut s = Schema::default();
        s.insert(Sequence {
            owner: None,
            schema: "public".into(),
            name: "t_id_seq".into(),
            data_type: "integer".into(),
            start: 1,
            increment: 1,
            min: 1,
            max: 2147483647,
            cache: 1,
            cycle: false,
            owned_by: Some("\"public\".\"t\".\"id\"".into()),
            last_value: None,
            comment: None,
            acl: vec![],
        });
        let parts = vec![
            Part {
                scope: Some(rels(&[("public", "t")])),
                schema: Schema::default(),
            },
            Part {
                scope: Some(rels(&[("public", "t_id_seq")])),
                schema: s,
            },
        ];
        let (m, _) = merge(&parts);
        assert!(
            m.sequences.is_empty(),
            "created by the migration: not part of the snapshot"
        );
    }

    #[test]
    fn restrict_and_intersect() {
        let mut s = Schema::default();
        s.insert(table("public", "t", &[("id", "int")]));
        s.insert(table("app", "x", &[("id", "int")]));
        let a = rels(&[("public", "t")]);
        let mut b = Scope::default();
        b.contents.insert("public".into());
        let both = Scope::intersect(Some(&a), Some(&b)).unwrap();
        assert_eq!(both.relations, a.relations);
        let r = restrict(s.clone(), Some(&both));
        assert_eq!(r.tables.len(), 1);
        assert!(r.tables.contains_key("\"public\".\"t\""));
        assert_eq!(restrict(s.clone(), None), s);
        assert!(Scope::intersect(None, None).is_none());
    }

    #[test]
    fn missing_is_what_is_new() {
        let mut have = rels(&[("public", "t")]);
        have.contents.insert("app".into());
        let want = rels(&[("public", "t"), ("app", "x"), ("public", "u")]);
        let m = have.missing(&want).unwrap();
        assert_eq!(m.relations.len(), 1);
        assert!(m.relations.contains(&("public".into(), "u".into())));
        assert!(have.missing(&rels(&[("public", "t")])).is_none());
        let json = m.to_json();
        let back: Scope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        // The SQL side reads [["s","n"], ...].
        assert!(json.contains("[[\"public\",\"u\"]]"), "{json}");
    }
}
