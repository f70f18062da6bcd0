//! ALTER COLUMN TYPE: is the change free (binary-coercible, no rewrite), a lossless
//! rewrite, or lossy? Plain Rust over the facts the pgrx layer reads from pg_type.

/// A column type as the catalog describes it (domains already resolved to their base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColType {
    /// `pg_type.typname` of the base type, e.g. `varchar`, `int4`, `numeric`.
    pub name: String,
    /// `pg_type.typcategory`.
    pub category: char,
    /// `atttypmod` / the new typmod; -1 when unconstrained.
    pub typmod: i32,
}

impl ColType {
    pub fn new(name: &str, category: char, typmod: i32) -> Self {
        ColType {
            name: name.to_string(),
            category,
            typmod,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeChange {
    /// No table rewrite and no value changes.
    Free,
    /// Every value converts exactly, but the table (and its indexes) are rewritten.
    Rewrite(String),
    /// Values may be truncated, rounded, or the statement fails on existing rows.
    Lossy(String),
}

const VARHDRSZ: i32 = 4;

/// Length limit of varchar/bpchar; None = unlimited.
fn char_len(t: &ColType) -> Option<i32> {
    (t.typmod >= VARHDRSZ).then(|| t.typmod - VARHDRSZ)
}

/// bit/varbit typmod is the length itself.
fn bit_len(t: &ColType) -> Option<i32> {
    (t.typmod >= 0).then_some(t.typmod)
}

/// (precision, scale) of numeric; None = unconstrained.
fn numeric_ps(t: &ColType) -> Option<(i32, i32)> {
    if t.typmod < VARHDRSZ {
        return None;
    }
    let m = t.typmod - VARHDRSZ;
    let precision = (m >> 16) & 0xffff;
    // PG 15 allows negative scales: an 11-bit two's-complement field.
    let scale = ((m & 0x7ff) ^ 1024) - 1024;
    Some((precision, scale))
}

/// Fractional-second precision of timestamp/time types; None = default (6).
fn time_precision(t: &ColType) -> i32 {
    if t.typmod >= 0 {
        t.typmod
    } else {
        6
    }
}

fn integer_rank(name: &str) -> Option<u8> {
    match name {
        "int2" => Some(1),
        "int4" => Some(2),
        "int8" => Some(3),
        _ => None,
    }
}

fn describe(t: &ColType) -> String {
    match t.name.as_str() {
        "varchar" | "bpchar" => match char_len(t) {
            Some(n) => format!("{}({n})", t.name),
            None => t.name.clone(),
        },
        "numeric" => match numeric_ps(t) {
            Some((p, s)) => format!("numeric({p},{s})"),
            None => "numeric".into(),
        },
        "bit" | "varbit" => match bit_len(t) {
            Some(n) => format!("{}({n})", t.name),
            None => t.name.clone(),
        },
        "timestamp" | "timestamptz" | "time" | "timetz" if t.typmod >= 0 => {
            format!("{}({})", t.name, t.typmod)
        }
        _ => t.name.clone(),
    }
}

/// The `type a -> b` fact for DETAIL.
pub fn describe_change(old: &ColType, new: &ColType) -> String {
    format!("Type {} -> {}", describe(old), describe(new))
}

/// Classifies a column type change.
///
/// * `binary_coercible`: `IsBinaryCoercible(old, new)` from the server.
/// * `computed_using`: the statement has a USING expression that is more than the
///   column itself (possibly cast): it computes new values, which we cannot judge.
pub fn classify(
    old: &ColType,
    new: &ColType,
    binary_coercible: bool,
    computed_using: bool,
) -> TypeChange {
    if computed_using {
        return TypeChange::Lossy(
            "the USING expression computes new values from the old ones; what it drops cannot be checked".into(),
        );
    }
    let o = old.name.as_str();
    let n = new.name.as_str();
    let lossy = |why: &str| TypeChange::Lossy(why.to_string());
    let rewrite = |why: &str| TypeChange::Rewrite(why.to_string());

    if o == n {
        return match o {
            "varchar" => match (char_len(old), char_len(new)) {
                (_, None) => TypeChange::Free,
                (None, Some(_)) => lossy("an unlimited varchar becomes length-limited"),
                (Some(a), Some(b)) if b >= a => TypeChange::Free,
                _ => lossy("the maximum length shrinks"),
            },
            "bpchar" => match (char_len(old), char_len(new)) {
                (Some(a), Some(b)) if b == a => TypeChange::Free,
                (Some(a), Some(b)) if b > a => rewrite("char(n) values are re-padded"),
                _ => lossy("the fixed length shrinks"),
            },
            "varbit" => match (bit_len(old), bit_len(new)) {
                (_, None) => TypeChange::Free,
                (Some(a), Some(b)) if b >= a => TypeChange::Free,
                _ => lossy("the maximum bit length shrinks"),
            },
            "bit" => {
                if old.typmod == new.typmod {
                    TypeChange::Free
                } else {
                    lossy("the bit length changes")
                }
            }
            "numeric" => match (numeric_ps(old), numeric_ps(new)) {
                (_, None) => TypeChange::Free,
                (None, Some(_)) => {
                    lossy("unconstrained numeric values are rounded or overflow the new precision")
                }
                (Some((p1, s1)), Some((p2, s2))) => {
                    if s2 < s1 {
                        lossy("the scale shrinks: values are rounded")
                    } else if p2 - s2 < p1 - s1 {
                        lossy("fewer integer digits: large values overflow")
                    } else if s2 == s1 {
                        TypeChange::Free
                    } else {
                        rewrite("the scale grows: every value is rewritten")
                    }
                }
            },
            "timestamp" | "timestamptz" | "time" | "timetz" => {
                if time_precision(new) >= time_precision(old) {
                    TypeChange::Free
                } else {
                    lossy("fractional seconds are rounded")
                }
            }
            "interval" => {
                if new.typmod < 0 || new.typmod == old.typmod {
                    TypeChange::Free
                } else {
                    lossy("interval fields or fractional seconds are dropped")
                }
            }
            _ => {
                if old.typmod == new.typmod || new.typmod < 0 {
                    TypeChange::Free
                } else {
                    rewrite("the type modifier changes")
                }
            }
        };
    }

    // Different types.
    match (o, n) {
        ("varchar", "text") | ("text", "varchar") if char_len(new).is_none() => {
            return TypeChange::Free
        }
        ("text", "varchar") | ("text", "bpchar") | ("varchar", "bpchar") => {
            return lossy("values longer than the new length make the statement fail")
        }
        ("bpchar", "text") | ("bpchar", "varchar") => {
            return match char_len(new) {
                Some(b) if char_len(old).is_none_or(|a| b < a) => {
                    lossy("values longer than the new length make the statement fail")
                }
                _ => rewrite("trailing blanks of char(n) are stripped"),
            }
        }
        _ => {}
    }
    if binary_coercible {
        return TypeChange::Free;
    }
    if let (Some(a), Some(b)) = (integer_rank(o), integer_rank(n)) {
        return if b > a {
            rewrite("the integer widens: every row is rewritten")
        } else {
            lossy("the integer narrows: large values make the statement fail")
        };
    }
    match (o, n) {
        ("int2" | "int4" | "int8", "numeric") => {
            return match numeric_ps(new) {
                None => rewrite("integers convert exactly to numeric"),
                Some((p, s)) if p - s >= 19 => rewrite("integers convert exactly to numeric"),
                Some(_) => lossy("large integers overflow the numeric precision"),
            }
        }
        ("int2" | "int4", "float8") | ("int2", "float4") | ("float4", "float8") => {
            return rewrite("every value converts exactly")
        }
        ("int8", "float4" | "float8") | ("int4", "float4") => {
            return lossy("large integers lose precision as floating point")
        }
        ("numeric" | "float4" | "float8", "int2" | "int4" | "int8") => {
            return lossy("fractions are rounded away")
        }
        ("numeric", "float4" | "float8") | ("float8", "float4") => {
            return lossy("digits beyond the float's precision are lost")
        }
        ("float4" | "float8", "numeric") => {
            return match numeric_ps(new) {
                None => rewrite("floats convert to numeric"),
                Some(_) => lossy("values are rounded to the numeric scale"),
            }
        }
        ("timestamp" | "timestamptz", "date")
        | ("timestamp" | "timestamptz", "time" | "timetz") => {
            return lossy("the time-of-day (or date) part is dropped")
        }
        ("date", "timestamp" | "timestamptz") => return rewrite("dates convert exactly"),
        ("timestamp", "timestamptz") | ("timestamptz", "timestamp") => {
            return rewrite("values are reinterpreted in the session time zone")
        }
        ("json", "jsonb") => {
            return rewrite("json is parsed into jsonb (duplicate keys and formatting are dropped)")
        }
        ("jsonb", "json") => return rewrite("jsonb is printed as json"),
        _ => {}
    }
    if new.category == 'S' && char_len(new).is_none() {
        return rewrite("every value is converted to text");
    }
    if new.category == 'S' {
        return lossy("values longer than the new length make the statement fail");
    }
    if old.category == 'S' {
        // A cast that can fail is lossy whatever the USING clause says: a row that does
        // not parse stops the migration, and one that parses loses its spelling
        // (' 007' -> 7).
        return lossy(
            "text is parsed into the new type: a row that does not parse makes the statement fail, and the original text is not kept",
        );
    }
    if new.category == 'B' || (old.category != new.category && new.category != 'U') {
        return lossy("values of a different kind are converted and may lose information");
    }
    rewrite("the table is rewritten with converted values")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vc(n: i32) -> ColType {
        ColType::new("varchar", 'S', if n < 0 { -1 } else { n + 4 })
    }
    fn num(p: i32, s: i32) -> ColType {
        ColType::new("numeric", 'N', ((p << 16) | (s & 0x7ff)) + 4)
    }
    fn t(name: &str, cat: char) -> ColType {
        ColType::new(name, cat, -1)
    }

    #[test]
    fn varchar_widen_and_to_text_are_free() {
        assert_eq!(classify(&vc(10), &vc(20), true, false), TypeChange::Free);
        assert_eq!(classify(&vc(10), &vc(-1), true, false), TypeChange::Free);
        assert_eq!(
            classify(&vc(10), &t("text", 'S'), true, false),
            TypeChange::Free
        );
        assert_eq!(
            classify(&t("text", 'S'), &vc(-1), true, false),
            TypeChange::Free
        );
    }

    #[test]
    fn varchar_narrow_is_lossy() {
        assert!(matches!(
            classify(&vc(200), &vc(50), true, false),
            TypeChange::Lossy(_)
        ));
        assert!(matches!(
            classify(&t("text", 'S'), &vc(50), true, false),
            TypeChange::Lossy(_)
        ));
    }

    #[test]
    fn numeric_precision_up_same_scale_is_free() {
        assert_eq!(
            classify(&num(10, 2), &num(12, 2), false, false),
            TypeChange::Free
        );
        assert_eq!(
            classify(&num(10, 2), &t("numeric", 'N'), false, false),
            TypeChange::Free
        );
        assert!(matches!(
            classify(&num(10, 2), &num(10, 1), false, false),
            TypeChange::Lossy(_)
        ));
        assert!(matches!(
            classify(&num(10, 2), &num(8, 2), false, false),
            TypeChange::Lossy(_)
        ));
        assert!(matches!(
            classify(&num(10, 2), &num(12, 4), false, false),
            TypeChange::Rewrite(_)
        ));
        assert!(matches!(
            classify(&t("numeric", 'N'), &num(12, 4), false, false),
            TypeChange::Lossy(_)
        ));
    }

    #[test]
    fn integers() {
        assert!(matches!(
            classify(&t("int4", 'N'), &t("int8", 'N'), false, false),
            TypeChange::Rewrite(_)
        ));
        assert!(matches!(
            classify(&t("int8", 'N'), &t("int4", 'N'), false, false),
            TypeChange::Lossy(_)
        ));
        assert!(matches!(
            classify(&t("float8", 'N'), &t("int4", 'N'), false, false),
            TypeChange::Lossy(_)
        ));
        assert!(matches!(
            classify(&t("int4", 'N'), &t("numeric", 'N'), false, false),
            TypeChange::Rewrite(_)
        ));
        assert!(matches!(
            classify(&t("int4", 'N'), &t("text", 'S'), false, false),
            TypeChange::Rewrite(_)
        ));
    }

    #[test]
    fn timestamps() {
        let ts = |p: i32| ColType::new("timestamptz", 'D', p);
        assert_eq!(classify(&ts(3), &ts(6), false, false), TypeChange::Free);
        assert_eq!(classify(&ts(3), &ts(-1), false, false), TypeChange::Free);
        assert!(matches!(
            classify(&ts(6), &ts(3), false, false),
            TypeChange::Lossy(_)
        ));
        assert!(matches!(
            classify(&ts(-1), &ts(0), false, false),
            TypeChange::Lossy(_)
        ));
        assert!(matches!(
            classify(&ts(-1), &t("date", 'D'), false, false),
            TypeChange::Lossy(_)
        ));
        assert!(matches!(
            classify(&t("date", 'D'), &ts(-1), false, false),
            TypeChange::Rewrite(_)
        ));
    }

    #[test]
    fn binary_coercible_is_free_and_text_parsing_is_lossy() {
        assert_eq!(
            classify(&t("cidr", 'I'), &t("inet", 'I'), true, false),
            TypeChange::Free
        );
        assert!(matches!(
            classify(&t("text", 'S'), &t("int4", 'N'), false, false),
            TypeChange::Lossy(_)
        ));
        assert!(matches!(
            classify(&t("text", 'S'), &t("mood", 'E'), false, false),
            TypeChange::Lossy(_)
        ));
    }

    #[test]
    fn computed_using_is_lossy() {
        assert!(matches!(
            classify(&vc(10), &vc(20), true, true),
            TypeChange::Lossy(_)
        ));
    }

    #[test]
    fn negative_numeric_scale_decodes() {
        let m = ColType::new("numeric", 'N', ((5 << 16) | ((-2i32) & 0x7ff)) + 4);
        assert_eq!(numeric_ps(&m), Some((5, -2)));
        assert_eq!(describe(&m), "numeric(5,-2)");
    }

    #[test]
    fn describe_change_is_readable() {
        assert_eq!(
            describe_change(&vc(200), &vc(50)),
            "Type varchar(200) -> varchar(50)"
        );
    }
}
